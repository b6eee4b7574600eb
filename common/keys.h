// Private and public keys (EC P-256/P-384/P-521, RSA 2048-8192) over OpenSSL EVP_PKEY.
#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/openssl_util.h"

namespace trellis::common {

enum class KeyType { kEcP256, kEcP384, kEcP521, kRsa2048, kRsa3072, kRsa4096, kRsaOther };

// "ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096" (SPIRE's names).
std::string KeyTypeName(KeyType type);
absl::StatusOr<KeyType> ParseKeyType(std::string_view name);
inline bool IsEcKeyType(KeyType t) {
  return t == KeyType::kEcP256 || t == KeyType::kEcP384 || t == KeyType::kEcP521;
}

enum class HashAlg { kSha256, kSha384, kSha512 };

// RSA modulus bounds: smaller is weak, larger is a CPU denial-of-service vector.
inline constexpr int kMinRsaBits = 2048;
inline constexpr int kMaxRsaBits = 8192;

class PublicKey {
 public:
  // SubjectPublicKeyInfo DER / "PUBLIC KEY" PEM. Refuses unsupported curves and RSA sizes.
  static absl::StatusOr<PublicKey> FromSpkiDer(std::string_view der);
  static absl::StatusOr<PublicKey> FromPem(std::string_view pem);
  // Copies the public half of `pkey` (which may hold a private key) after checking its type.
  static absl::StatusOr<PublicKey> FromEvpPkey(EVP_PKEY* pkey);
  // Shares `pkey` (taking a reference) when the caller knows it holds no private material,
  // e.g. a certificate's key; avoids re-decoding it.
  static absl::StatusOr<PublicKey> SharePublicEvpPkey(EVP_PKEY* pkey);

  KeyType type() const { return type_; }
  int bits() const;
  const std::string& spki_der() const { return spki_der_; }
  std::string ToPem() const;
  // OK when `signature` is valid over `data`; UNAUTHENTICATED otherwise. For EC keys the
  // signature is DER (ECDSA-Sig-Value); `pss` selects RSASSA-PSS (salt = hash length).
  absl::Status Verify(std::string_view data, std::string_view signature, HashAlg hash,
                      bool pss = false) const;
  EVP_PKEY* pkey() const { return pkey_.get(); }

  bool operator==(const PublicKey& other) const { return spki_der_ == other.spki_der_; }

 private:
  PublicKey(std::shared_ptr<EVP_PKEY> pkey, KeyType type, std::string spki)
      : pkey_(std::move(pkey)), type_(type), spki_der_(std::move(spki)) {}
  std::shared_ptr<EVP_PKEY> pkey_;
  KeyType type_;
  std::string spki_der_;
};

class PrivateKey {
 public:
  static absl::StatusOr<PrivateKey> Generate(KeyType type = KeyType::kEcP256);
  // PKCS#8 DER; PEM accepts "PRIVATE KEY" and the traditional EC/RSA forms.
  static absl::StatusOr<PrivateKey> FromPkcs8Der(std::string_view der);
  static absl::StatusOr<PrivateKey> FromPem(std::string_view pem);

  absl::StatusOr<SecretBytes> ToPkcs8Der() const;
  absl::StatusOr<SecretBytes> ToPem() const;

  KeyType type() const { return public_key_.type(); }
  const PublicKey& public_key() const { return public_key_; }
  const std::string& spki_der() const { return public_key_.spki_der(); }
  // The hash conventionally paired with this key (SHA-256 for P-256 and RSA, SHA-384 for
  // P-384, SHA-512 for P-521).
  HashAlg DefaultHash() const;

  // Signs `data`; EC signatures come back DER encoded.
  absl::StatusOr<std::string> Sign(std::string_view data, HashAlg hash, bool pss = false) const;
  absl::StatusOr<std::string> Sign(std::string_view data) const {
    return Sign(data, DefaultHash());
  }
  EVP_PKEY* pkey() const { return pkey_.get(); }

 private:
  PrivateKey(std::shared_ptr<EVP_PKEY> pkey, PublicKey pub)
      : pkey_(std::move(pkey)), public_key_(std::move(pub)) {}
  static absl::StatusOr<PrivateKey> FromOwned(EVP_PKEY* pkey);
  std::shared_ptr<EVP_PKEY> pkey_;
  PublicKey public_key_;
};

// Writes the key as PKCS#8 PEM to `path` atomically, 0600, creating the directory 0700.
absl::Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key);
absl::StatusOr<PrivateKey> ReadPrivateKeyFile(const std::string& path);

// Internal: the EVP_MD for a hash (fetched once, process lifetime).
const EVP_MD* HashMd(HashAlg hash);

}  // namespace trellis::common

// Key generation, encoding and raw signatures over EVP_PKEY.
#include "common/keys.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace trellis::common {
namespace {

std::shared_ptr<EVP_PKEY> Share(EVP_PKEY* pkey) {
  return std::shared_ptr<EVP_PKEY>(pkey, EvpPkeyDeleter());
}

// Classifies a key, refusing curves and RSA sizes outside what Trellis supports.
absl::StatusOr<KeyType> Classify(EVP_PKEY* pkey) {
  int id = EVP_PKEY_get_base_id(pkey);
  if (id == EVP_PKEY_EC) {
    char group[64] = {0};
    size_t len = 0;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &len)) {
      ClearOpenSslErrors();
      return absl::InvalidArgumentError("EC key has no named curve (explicit parameters?)");
    }
    std::string name(group, len);
    if (name == "prime256v1" || name == "P-256") return KeyType::kEcP256;
    if (name == "secp384r1" || name == "P-384") return KeyType::kEcP384;
    if (name == "secp521r1" || name == "P-521") return KeyType::kEcP521;
    return absl::InvalidArgumentError("unsupported EC curve " + name);
  }
  if (id == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < kMinRsaBits || bits > kMaxRsaBits) {
      return absl::InvalidArgumentError(
          absl::StrCat("RSA key size ", bits, " bits outside [2048, 8192]"));
    }
    if (bits == 2048) return KeyType::kRsa2048;
    if (bits == 3072) return KeyType::kRsa3072;
    if (bits == 4096) return KeyType::kRsa4096;
    return KeyType::kRsaOther;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported key algorithm ", OBJ_nid2sn(id == 0 ? NID_undef : id)));
}

absl::StatusOr<std::string> SpkiOf(EVP_PKEY* pkey) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) return OpenSslError("encoding public key");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

// Encrypted PEM is not supported; without this OpenSSL would prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// EVP_MD objects fetched once: repeated implicit fetches by name are measurable per call.
struct Mds {
  EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MD* sha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
};

}  // namespace

const EVP_MD* HashMd(HashAlg hash) {
  static const Mds* mds = new Mds();
  switch (hash) {
    case HashAlg::kSha384:
      return mds->sha384;
    case HashAlg::kSha512:
      return mds->sha512;
    case HashAlg::kSha256:
      break;
  }
  return mds->sha256;
}

std::string KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return "ec-p256";
    case KeyType::kEcP384:
      return "ec-p384";
    case KeyType::kEcP521:
      return "ec-p521";
    case KeyType::kRsa2048:
      return "rsa-2048";
    case KeyType::kRsa3072:
      return "rsa-3072";
    case KeyType::kRsa4096:
      return "rsa-4096";
    case KeyType::kRsaOther:
      return "rsa";
  }
  return "unknown";
}

absl::StatusOr<KeyType> ParseKeyType(std::string_view name) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kEcP521, KeyType::kRsa2048,
                    KeyType::kRsa3072, KeyType::kRsa4096}) {
    if (name == KeyTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key type \"", std::string(name),
                   "\" (want ec-p256, ec-p384, ec-p521, rsa-2048, rsa-3072 or "
                   "rsa-4096)"));
}

// ---- PublicKey ----

absl::StatusOr<PublicKey> PublicKey::FromEvpPkey(EVP_PKEY* pkey) {
  if (pkey == nullptr) return absl::InvalidArgumentError("no public key");
  TRELLIS_ASSIGN_OR_RETURN(KeyType type, Classify(pkey));
  TRELLIS_ASSIGN_OR_RETURN(std::string spki, SpkiOf(pkey));
  // Re-decode from the SPKI so the handle holds only public material.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(spki.data());
  EVP_PKEY* pub = d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size()));
  if (pub == nullptr) return OpenSslError("decoding public key");
  return PublicKey(Share(pub), type, std::move(spki));
}

absl::StatusOr<PublicKey> PublicKey::SharePublicEvpPkey(EVP_PKEY* pkey) {
  if (pkey == nullptr) return absl::InvalidArgumentError("no public key");
  TRELLIS_ASSIGN_OR_RETURN(KeyType type, Classify(pkey));
  TRELLIS_ASSIGN_OR_RETURN(std::string spki, SpkiOf(pkey));
  if (EVP_PKEY_up_ref(pkey) != 1) return OpenSslError("referencing public key");
  return PublicKey(Share(pkey), type, std::move(spki));
}

absl::StatusOr<PublicKey> PublicKey::FromSpkiDer(std::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!pkey) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed SubjectPublicKeyInfo DER");
  }
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return absl::InvalidArgumentError("trailing bytes after SubjectPublicKeyInfo");
  }
  TRELLIS_ASSIGN_OR_RETURN(KeyType type, Classify(pkey.get()));
  return PublicKey(Share(pkey.release()), type, std::string(der));
}

absl::StatusOr<PublicKey> PublicKey::FromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  EvpPkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!pkey) return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed public key PEM");
  TRELLIS_ASSIGN_OR_RETURN(KeyType type, Classify(pkey.get()));
  TRELLIS_ASSIGN_OR_RETURN(std::string spki, SpkiOf(pkey.get()));
  return PublicKey(Share(pkey.release()), type, std::move(spki));
}

int PublicKey::bits() const { return EVP_PKEY_get_bits(pkey_.get()); }

std::string PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), pkey_.get());
  return BioToString(bio.get());
}

absl::Status PublicKey::Verify(std::string_view data, std::string_view signature, HashAlg hash,
                               bool pss) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, HashMd(hash), nullptr, pkey_.get()) != 1) {
    return OpenSslError("initialising verification");
  }
  if (pss) {
    if (IsEcKeyType(type_)) return absl::InvalidArgumentError("PSS requested for an EC key");
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      return OpenSslError("configuring PSS");
    }
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  if (rc != 1) {
    ClearOpenSslErrors();
    return absl::UnauthenticatedError("signature verification failed");
  }
  return absl::OkStatus();
}

// ---- PrivateKey ----

absl::StatusOr<PrivateKey> PrivateKey::FromOwned(EVP_PKEY* raw) {
  EvpPkeyPtr pkey(raw);
  TRELLIS_ASSIGN_OR_RETURN(PublicKey pub, PublicKey::FromEvpPkey(pkey.get()));
  return PrivateKey(Share(pkey.release()), std::move(pub));
}

absl::StatusOr<PrivateKey> PrivateKey::Generate(KeyType type) {
  EVP_PKEY* pkey = nullptr;
  switch (type) {
    case KeyType::kEcP256:
      pkey = EVP_EC_gen("P-256");
      break;
    case KeyType::kEcP384:
      pkey = EVP_EC_gen("P-384");
      break;
    case KeyType::kEcP521:
      pkey = EVP_EC_gen("P-521");
      break;
    case KeyType::kRsa2048:
      pkey = EVP_RSA_gen(2048);
      break;
    case KeyType::kRsa3072:
      pkey = EVP_RSA_gen(3072);
      break;
    case KeyType::kRsa4096:
      pkey = EVP_RSA_gen(4096);
      break;
    case KeyType::kRsaOther:
      return absl::InvalidArgumentError("cannot generate an unspecified RSA size");
  }
  if (pkey == nullptr) return OpenSslError("generating " + KeyTypeName(type) + " key");
  return FromOwned(pkey);
}

absl::StatusOr<PrivateKey> PrivateKey::FromPkcs8Der(std::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* pkey = d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size()));
  if (pkey == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed PKCS#8 private key DER");
  }
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    EVP_PKEY_free(pkey);
    return absl::InvalidArgumentError("trailing bytes after private key DER");
  }
  return FromOwned(pkey);
}

absl::StatusOr<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr);
  if (pkey == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed private key PEM");
  }
  return FromOwned(pkey);
}

absl::StatusOr<SecretBytes> PrivateKey::ToPkcs8Der() const {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      i2d_PKCS8PrivateKey_bio(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding PKCS#8 private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return SecretBytes(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len));
}

absl::StatusOr<SecretBytes> PrivateKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return OpenSslError("encoding private key PEM");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return SecretBytes(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len));
}

HashAlg PrivateKey::DefaultHash() const {
  switch (type()) {
    case KeyType::kEcP384:
      return HashAlg::kSha384;
    case KeyType::kEcP521:
      return HashAlg::kSha512;
    default:
      return HashAlg::kSha256;
  }
}

absl::StatusOr<std::string> PrivateKey::Sign(std::string_view data, HashAlg hash, bool pss) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, HashMd(hash), nullptr, pkey_.get()) != 1) {
    return OpenSslError("initialising signature");
  }
  if (pss) {
    if (IsEcKeyType(type())) return absl::InvalidArgumentError("PSS requested for an EC key");
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      return OpenSslError("configuring PSS");
    }
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) {
    return OpenSslError("sizing signature");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     data.size()) != 1) {
    return OpenSslError("signing");
  }
  sig.resize(len);
  return sig;
}

absl::Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key) {
  TRELLIS_ASSIGN_OR_RETURN(SecretBytes pem, key.ToPem());
  return WritePrivateFile(path, pem.view());
}

absl::StatusOr<PrivateKey> ReadPrivateKeyFile(const std::string& path) {
  TRELLIS_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  SecretBytes secret(std::move(pem));
  auto key = PrivateKey::FromPem(secret.view());
  if (!key.ok()) return Annotate(key.status(), path);
  return key;
}

}  // namespace trellis::common

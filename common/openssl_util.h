// RAII ownership of OpenSSL handles, error-queue draining, and wiped secret buffers.
#pragma once

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"

// Opaque types types.h does not declare.
struct X509_req_st;
struct X509_extension_st;
struct ECDSA_SIG_st;
struct stack_st_GENERAL_NAME;
struct stack_st_X509;

namespace trellis::common {

// Deleters are defined out of line so this header needs only the opaque OpenSSL types.
#define TRELLIS_OPENSSL_DELETER_(Type, Name) \
  struct Name##Deleter {                     \
    void operator()(Type* p) const;          \
  };                                         \
  using Name##Ptr = std::unique_ptr<Type, Name##Deleter>

TRELLIS_OPENSSL_DELETER_(EVP_PKEY, EvpPkey);
TRELLIS_OPENSSL_DELETER_(EVP_PKEY_CTX, EvpPkeyCtx);
TRELLIS_OPENSSL_DELETER_(EVP_MD_CTX, EvpMdCtx);
TRELLIS_OPENSSL_DELETER_(EVP_MD, EvpMd);
TRELLIS_OPENSSL_DELETER_(X509, X509);
TRELLIS_OPENSSL_DELETER_(X509_req_st, X509Req);
TRELLIS_OPENSSL_DELETER_(X509_NAME, X509Name);
TRELLIS_OPENSSL_DELETER_(X509_extension_st, X509Extension);
TRELLIS_OPENSSL_DELETER_(X509_STORE, X509Store);
TRELLIS_OPENSSL_DELETER_(X509_STORE_CTX, X509StoreCtx);
TRELLIS_OPENSSL_DELETER_(BIO, Bio);
TRELLIS_OPENSSL_DELETER_(BIGNUM, Bignum);
TRELLIS_OPENSSL_DELETER_(ECDSA_SIG_st, EcdsaSig);
TRELLIS_OPENSSL_DELETER_(ASN1_INTEGER, Asn1Integer);
TRELLIS_OPENSSL_DELETER_(ASN1_TIME, Asn1Time);
TRELLIS_OPENSSL_DELETER_(OSSL_PARAM_BLD, ParamBld);
TRELLIS_OPENSSL_DELETER_(OSSL_PARAM, Param);
TRELLIS_OPENSSL_DELETER_(stack_st_GENERAL_NAME, GeneralNames);
TRELLIS_OPENSSL_DELETER_(stack_st_X509, X509Stack);  // frees the certificates too

#undef TRELLIS_OPENSSL_DELETER_

// Drains the thread's OpenSSL error queue into an INTERNAL status prefixed with `context`.
absl::Status OpenSslError(const std::string& context);
// Same, with a chosen code (e.g. INVALID_ARGUMENT when the input was bad).
absl::Status OpenSslError(absl::StatusCode code, const std::string& context);
// Discards queued OpenSSL errors (after an expected failure).
void ClearOpenSslErrors();

// Bytes that must not outlive their use in memory (private key encodings): wiped with
// OPENSSL_cleanse on destruction and on reassignment. Move-only.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  SecretBytes(const uint8_t* data, size_t size)
      : bytes_(reinterpret_cast<const char*>(data), size) {}
  ~SecretBytes() { Wipe(); }
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.Wipe(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  std::string_view view() const { return bytes_; }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(bytes_.data()); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

 private:
  void Wipe();
  std::string bytes_;
};

// Reads all bytes written to a memory BIO.
std::string BioToString(BIO* bio);

// Lowercase hex of bytes, and the SHA-1 / SHA-256 digests of bytes.
std::string HexEncode(std::string_view bytes);
std::string Sha1(std::string_view bytes);
std::string Sha256(std::string_view bytes);

// Constant-time equality for MACs/secrets.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace trellis::common

// OpenSSL handle deleters, error draining, and secret wiping.
#include "common/openssl_util.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>

namespace trellis::common {

void EvpPkeyDeleter::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
void EvpPkeyCtxDeleter::operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
void EvpMdCtxDeleter::operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
void EvpMdDeleter::operator()(EVP_MD* p) const { EVP_MD_free(p); }
void X509Deleter::operator()(X509* p) const { X509_free(p); }
void X509ReqDeleter::operator()(X509_REQ* p) const { X509_REQ_free(p); }
void X509NameDeleter::operator()(X509_NAME* p) const { X509_NAME_free(p); }
void X509ExtensionDeleter::operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
void X509StoreDeleter::operator()(X509_STORE* p) const { X509_STORE_free(p); }
void X509StoreCtxDeleter::operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
void BioDeleter::operator()(BIO* p) const { BIO_free_all(p); }
void BignumDeleter::operator()(BIGNUM* p) const { BN_free(p); }
void EcdsaSigDeleter::operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
void Asn1IntegerDeleter::operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); }
void Asn1TimeDeleter::operator()(ASN1_TIME* p) const { ASN1_TIME_free(p); }
void ParamBldDeleter::operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
void ParamDeleter::operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
void GeneralNamesDeleter::operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
void X509StackDeleter::operator()(stack_st_X509* p) const { sk_X509_pop_free(p, X509_free); }

absl::Status OpenSslError(absl::StatusCode code, const std::string& context) {
  std::string message = context;
  unsigned long err;
  bool first = true;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    message += first ? ": " : "; ";
    message += buf;
    first = false;
  }
  return absl::Status(code, message);
}

absl::Status OpenSslError(const std::string& context) {
  return OpenSslError(absl::StatusCode::kInternal, context);
}

void ClearOpenSslErrors() { ERR_clear_error(); }

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.Wipe();
  }
  return *this;
}

void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return "";
  return std::string(data, static_cast<size_t>(len));
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

std::string Sha1(std::string_view bytes) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

std::string Sha256(std::string_view bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace trellis::common

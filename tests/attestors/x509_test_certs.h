// Test certificates for x509pop: plain X.509 CAs and leaves built directly with OpenSSL.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/x509.h"
#include "gtest/gtest.h"

namespace trellis::attestors::testcerts {

inline const absl::Time kStart = absl::FromUnixSeconds(1800000000);

struct Pkey {
  EVP_PKEY* p = nullptr;
  Pkey() = default;
  explicit Pkey(EVP_PKEY* k) : p(k) {}
  Pkey(Pkey&& o) noexcept : p(o.p) { o.p = nullptr; }
  ~Pkey() { EVP_PKEY_free(p); }
};

inline Pkey EcKey() { return Pkey(EVP_EC_gen("P-256")); }
inline Pkey RsaKey(unsigned bits) { return Pkey(EVP_RSA_gen(bits)); }

inline std::string PemOfKey(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

// A plain X.509 certificate (no SPIFFE profile): CN, optional SANs and key usage.
struct Issued {
  std::string der;
  X509* x509 = nullptr;
  ~Issued() { X509_free(x509); }
  Issued() = default;
  Issued(Issued&& o) noexcept : der(std::move(o.der)), x509(o.x509) { o.x509 = nullptr; }
  Issued& operator=(Issued&& o) noexcept {
    std::swap(der, o.der);
    std::swap(x509, o.x509);
    return *this;
  }
};

inline Issued MakeCert(const std::string& cn, EVP_PKEY* subject_key, const Issued* issuer,
                EVP_PKEY* issuer_key, bool ca, const std::string& san = "",
                const std::string& key_usage = "", long serial = 0x1234,
                absl::Time not_after = kStart + absl::Hours(24)) {
  Issued out;
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_subject_name(x, name);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->x509) : name);
  X509_NAME_free(name);
  ASN1_TIME_set(X509_getm_notBefore(x), absl::ToTimeT(kStart - absl::Hours(1)));
  ASN1_TIME_set(X509_getm_notAfter(x), absl::ToTimeT(not_after));
  X509_set_pubkey(x, subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer->x509 : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (!key_usage.empty()) {
    add(NID_key_usage, key_usage);
  } else if (ca) {
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  add(NID_subject_key_identifier, "hash");
  if (!san.empty()) add(NID_subject_alt_name, san);
  X509_sign(x, issuer_key, EVP_sha256());
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  out.der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  out.x509 = x;
  return out;
}

inline std::string Sha1Hex(const std::string& der) {
  return common::Certificate::FromDer(der)->Sha1Fingerprint();
}

}  // namespace trellis::attestors::testcerts

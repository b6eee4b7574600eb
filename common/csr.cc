// PKCS#10 CSR building, strict DER splitting and fast self-signature verification.
#include "common/csr.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/status/status.h"
#include "common/der.h"
#include "common/openssl_util.h"
#include "common/status.h"

namespace trellis::common {
namespace {

using std::string_view_literals::operator""sv;

constexpr std::string_view kOidEcPublicKey = "\x2a\x86\x48\xce\x3d\x02\x01"sv;
constexpr std::string_view kOidP256 = "\x2a\x86\x48\xce\x3d\x03\x01\x07"sv;
constexpr std::string_view kOidP384 = "\x2b\x81\x04\x00\x22"sv;
constexpr std::string_view kOidP521 = "\x2b\x81\x04\x00\x23"sv;
constexpr std::string_view kOidRsaEncryption = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"sv;
constexpr std::string_view kOidEcdsaSha256 = "\x2a\x86\x48\xce\x3d\x04\x03\x02"sv;
constexpr std::string_view kOidEcdsaSha384 = "\x2a\x86\x48\xce\x3d\x04\x03\x03"sv;
constexpr std::string_view kOidEcdsaSha512 = "\x2a\x86\x48\xce\x3d\x04\x03\x04"sv;
constexpr std::string_view kOidRsaSha256 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"sv;
constexpr std::string_view kOidRsaSha384 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c"sv;
constexpr std::string_view kOidRsaSha512 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d"sv;

// An 8192-bit RSA SubjectPublicKeyInfo is about 1060 bytes; refuse far larger input before
// handing it to a decoder.
constexpr size_t kMaxSpkiBytes = 1200;

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError("CSR: " + what); }

#define CSR_READ(var, reader, tag, what)                                             \
  auto var##_or = (reader).Read(tag);                                                \
  if (!var##_or.ok())                                                                \
    return Bad(std::string(what) + ": " + std::string(var##_or.status().message())); \
  der::Element var = *var##_or

// Domain-parameter-only EC keys, one per curve, built once. Duplicating one and setting the
// public point costs about a third of a fresh import by name (which rebuilds the group).
EVP_PKEY* NewEcParams(const char* group) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  OSSL_PARAM params[2];
  params[0] =
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0);
  params[1] = OSSL_PARAM_construct_end();
  EVP_PKEY* out = nullptr;
  if (!ctx || EVP_PKEY_paramgen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_params(ctx.get(), params) != 1 || EVP_PKEY_paramgen(ctx.get(), &out) != 1) {
    return nullptr;
  }
  return out;
}

const EVP_PKEY* EcParams(std::string_view group) {
  static EVP_PKEY* const p256 = NewEcParams("prime256v1");
  static EVP_PKEY* const p384 = NewEcParams("secp384r1");
  static EVP_PKEY* const p521 = NewEcParams("secp521r1");
  if (group == "prime256v1") return p256;
  if (group == "secp384r1") return p384;
  return p521;
}

}  // namespace

namespace internal {

absl::StatusOr<CsrView> ParseCsrView(std::string_view input) {
  CsrView v;
  der::Reader top(input);
  CSR_READ(req, top, der::kSequence, "CertificationRequest");
  if (!top.empty()) return Bad("trailing bytes after CertificationRequest");
  der::Reader r(req.content);
  CSR_READ(info, r, der::kSequence, "CertificationRequestInfo");
  CSR_READ(sig_alg, r, der::kSequence, "signatureAlgorithm");
  CSR_READ(sig, r, der::kBitString, "signature");
  if (!r.empty()) return Bad("trailing fields after signature");
  v.info = info.encoded;

  der::Reader ir(info.content);
  CSR_READ(version, ir, der::kInteger, "version");
  if (version.content != "\x00"sv) return Bad("version is not 0 (v1)");
  CSR_READ(subject, ir, der::kSequence, "subject");
  CSR_READ(spki, ir, der::kSequence, "subjectPKInfo");
  CSR_READ(attrs, ir, der::ContextConstructed(0), "attributes");
  if (!ir.empty()) return Bad("trailing fields in CertificationRequestInfo");
  (void)subject;
  (void)attrs;
  if (spki.encoded.size() > kMaxSpkiBytes) return Bad("public key too large");
  v.spki = spki.encoded;

  der::Reader kr(spki.content);
  CSR_READ(key_alg, kr, der::kSequence, "public key algorithm");
  CSR_READ(key_bits, kr, der::kBitString, "public key");
  if (!kr.empty()) return Bad("trailing fields in subjectPKInfo");
  if (key_bits.content.empty() || key_bits.content[0] != 0) {
    return Bad("public key BIT STRING has unused bits");
  }
  der::Reader ar(key_alg.content);
  CSR_READ(key_oid, ar, der::kOid, "public key algorithm OID");
  if (key_oid.content == kOidEcPublicKey) {
    CSR_READ(curve, ar, der::kOid, "EC curve (only named curves are accepted)");
    if (!ar.empty()) return Bad("trailing EC algorithm parameters");
    size_t point_len = 0;
    if (curve.content == kOidP256) {
      v.ec_group = "prime256v1";
      point_len = 65;
    } else if (curve.content == kOidP384) {
      v.ec_group = "secp384r1";
      point_len = 97;
    } else if (curve.content == kOidP521) {
      v.ec_group = "secp521r1";
      point_len = 133;
    } else {
      return Bad("unsupported EC curve (want P-256, P-384 or P-521)");
    }
    v.ec_point = key_bits.content.substr(1);
    if (v.ec_point.size() != point_len || v.ec_point[0] != 0x04) {
      return Bad("EC public key is not an uncompressed point of the curve's size");
    }
  } else if (key_oid.content == kOidRsaEncryption) {
    v.rsa = true;
    if (!ar.empty()) {
      CSR_READ(null, ar, der::kNull, "RSA algorithm parameters");
      if (!null.content.empty() || !ar.empty()) return Bad("bad RSA algorithm parameters");
    }
  } else {
    return Bad("unsupported public key algorithm (want EC or RSA)");
  }

  der::Reader sr(sig_alg.content);
  CSR_READ(sig_oid, sr, der::kOid, "signature algorithm OID");
  bool ecdsa;
  if (sig_oid.content == kOidEcdsaSha256) {
    ecdsa = true, v.hash = HashAlg::kSha256;
  } else if (sig_oid.content == kOidEcdsaSha384) {
    ecdsa = true, v.hash = HashAlg::kSha384;
  } else if (sig_oid.content == kOidEcdsaSha512) {
    ecdsa = true, v.hash = HashAlg::kSha512;
  } else if (sig_oid.content == kOidRsaSha256) {
    ecdsa = false, v.hash = HashAlg::kSha256;
  } else if (sig_oid.content == kOidRsaSha384) {
    ecdsa = false, v.hash = HashAlg::kSha384;
  } else if (sig_oid.content == kOidRsaSha512) {
    ecdsa = false, v.hash = HashAlg::kSha512;
  } else {
    return Bad("unsupported signature algorithm");
  }
  if (ecdsa) {
    if (!sr.empty()) return Bad("ECDSA signature algorithm must have no parameters");
  } else if (!sr.empty()) {
    CSR_READ(null, sr, der::kNull, "RSA signature parameters");
    if (!null.content.empty() || !sr.empty()) return Bad("bad RSA signature parameters");
  }
  if (ecdsa == v.rsa) return Bad("signature algorithm does not match the key type");
  if (sig.content.size() < 2 || sig.content[0] != 0) return Bad("malformed signature BIT STRING");
  v.signature = sig.content.substr(1);
  return v;
}

absl::Status VerifyCsrView(const CsrView& v) {
  EvpPkeyPtr pkey;
  std::optional<PublicKey> rsa_key;  // keeps the RSA handle alive during verification
  if (v.rsa) {
    auto key = PublicKey::FromSpkiDer(v.spki);
    if (!key.ok()) return Bad(std::string(key.status().message()));
    rsa_key = *key;
  } else {
    const EVP_PKEY* params = EcParams(v.ec_group);
    if (params == nullptr) return OpenSslError("creating EC parameters");
    pkey.reset(EVP_PKEY_dup(const_cast<EVP_PKEY*>(params)));
    if (!pkey) return OpenSslError("copying EC parameters");
    // Decoding the point checks that it lies on the curve.
    if (EVP_PKEY_set1_encoded_public_key(pkey.get(),
                                         reinterpret_cast<const unsigned char*>(v.ec_point.data()),
                                         v.ec_point.size()) != 1) {
      ClearOpenSslErrors();
      return Bad("EC public key is not a point on the curve");
    }
  }
  EVP_PKEY* key = v.rsa ? rsa_key->pkey() : pkey.get();
  // Hashing with the pre-fetched digest and verifying through a bare EVP_PKEY_CTX skips the
  // per-call digest lookup that EVP_DigestVerifyInit performs.
  const EVP_MD* md = HashMd(v.hash);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(v.info.data(), v.info.size(), digest, &digest_len, md, nullptr) != 1) {
    return OpenSslError("hashing CSR");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
    return OpenSslError("initialising CSR verification");
  }
  int rc = EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(v.signature.data()),
                           v.signature.size(), digest, digest_len);
  if (rc != 1) {
    ClearOpenSslErrors();
    return Bad("signature does not verify");
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<std::string> BuildCsr(const PrivateKey& key, const std::optional<SpiffeId>& id) {
  X509ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.pkey()) != 1) {
    return OpenSslError("building CSR");
  }
  if (id.has_value()) {
    GeneralNamesPtr names(GENERAL_NAMES_new());
    GENERAL_NAME* gn = GENERAL_NAME_new();
    ASN1_IA5STRING* uri = ASN1_IA5STRING_new();
    std::string s = id->String();
    if (names == nullptr || gn == nullptr || uri == nullptr ||
        ASN1_STRING_set(uri, s.data(), static_cast<int>(s.size())) != 1) {
      GENERAL_NAME_free(gn);
      ASN1_IA5STRING_free(uri);
      return OpenSslError("building CSR SAN");
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, uri);
    sk_GENERAL_NAME_push(names.get(), gn);
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    bool ok =
        exts != nullptr &&
        X509V3_add1_i2d(&exts, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1 &&
        X509_REQ_add_extensions(req.get(), exts) == 1;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ok) return OpenSslError("adding CSR extension request");
  }
  if (X509_REQ_sign(req.get(), key.pkey(), HashMd(key.DefaultHash())) <= 0) {
    return OpenSslError("signing CSR");
  }
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return OpenSslError("encoding CSR");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<CertificateRequest> CertificateRequest::FromDer(std::string_view der) {
  TRELLIS_ASSIGN_OR_RETURN(internal::CsrView view, internal::ParseCsrView(der));
  auto key = PublicKey::FromSpkiDer(view.spki);
  if (!key.ok()) return Bad(std::string(key.status().message()));
  return CertificateRequest(std::string(der), *std::move(key));
}

absl::StatusOr<CertificateRequest> CertificateRequest::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed CSR PEM");
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return OpenSslError("re-encoding CSR");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return FromDer(out);
}

absl::Status CertificateRequest::VerifySignature() const {
  TRELLIS_ASSIGN_OR_RETURN(internal::CsrView view, internal::ParseCsrView(der_));
  return internal::VerifyCsrView(view);
}

absl::StatusOr<std::vector<std::string>> CertificateRequest::UriSans() const {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der_.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der_.size())));
  if (!req) return OpenSslError(absl::StatusCode::kInvalidArgument, "decoding CSR");
  std::vector<std::string> out;
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req.get());
  if (exts == nullptr) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr));
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  if (names == nullptr) return out;
  GeneralNamesPtr owned(names);
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_URI) {
      const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  return out;
}

}  // namespace trellis::common

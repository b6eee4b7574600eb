// Certificate parsing, CA builders, the direct-DER X509-SVID issuer, and chain verification.
#include "common/x509.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/der.h"
#include "common/openssl_util.h"
#include "common/status.h"

namespace trellis::common {
namespace {

using std::string_view_literals::operator""sv;

constexpr absl::Duration kBackdate = absl::Seconds(10);
constexpr size_t kMaxDnsNameLength = 253;
constexpr size_t kMaxDnsNames = 32;

std::shared_ptr<X509> ShareX509(X509* x) { return std::shared_ptr<X509>(x, X509Deleter()); }

absl::Time Asn1ToTime(const ASN1_TIME* t) {
  struct tm tm;
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

std::string NameToString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return BioToString(bio.get());
}

std::vector<std::string> SansOfType(X509* x, int type) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  GeneralNamesPtr owned(names);
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != type) continue;
    const ASN1_IA5STRING* s = type == GEN_URI ? gn->d.uniformResourceIdentifier : gn->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

// RFC 7468 textual encoding of one DER block.
std::string PemBlock(std::string_view label, std::string_view der) {
  std::string b64;
  absl::Base64Escape(std::string(der), &b64);
  std::string out = absl::StrCat("-----BEGIN ", std::string(label), "-----\n");
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out.push_back('\n');
  }
  absl::StrAppend(&out, "-----END ", std::string(label), "-----\n");
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Splits PEM text into CERTIFICATE blocks' DER; anything else is an error.
absl::StatusOr<std::vector<std::string>> PemCertificateBlocks(std::string_view pem) {
  std::vector<std::string> out;
  constexpr std::string_view kBegin = "-----BEGIN ";
  size_t pos = 0;
  while (true) {
    while (pos < pem.size() && IsSpace(pem[pos])) ++pos;
    if (pos == pem.size()) break;
    if (pem.substr(pos, kBegin.size()) != kBegin) {
      return absl::InvalidArgumentError(absl::StrCat("PEM: unexpected text at byte ", pos,
                                                     " (want -----BEGIN CERTIFICATE-----)"));
    }
    size_t label_start = pos + kBegin.size();
    size_t label_end = pem.find("-----", label_start);
    if (label_end == std::string_view::npos) return absl::InvalidArgumentError("PEM: bad header");
    std::string label(pem.substr(label_start, label_end - label_start));
    if (label != "CERTIFICATE") {
      return absl::InvalidArgumentError("PEM: unexpected block type \"" + label.substr(0, 40) +
                                        "\" (only CERTIFICATE is allowed)");
    }
    size_t body_start = label_end + 5;
    std::string end_marker = "-----END " + label + "-----";
    size_t body_end = pem.find(end_marker, body_start);
    if (body_end == std::string_view::npos) {
      return absl::InvalidArgumentError("PEM: missing -----END CERTIFICATE-----");
    }
    std::string b64;
    for (char c : pem.substr(body_start, body_end - body_start)) {
      if (!IsSpace(c)) b64.push_back(c);
    }
    std::string der;
    if (b64.empty() || !absl::Base64Unescape(b64, &der) || der.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PEM: certificate block ", out.size() + 1, " is not valid base64"));
    }
    out.push_back(std::move(der));
    pos = body_end + end_marker.size();
  }
  if (out.empty()) return absl::InvalidArgumentError("PEM: no CERTIFICATE block found");
  return out;
}

absl::StatusOr<std::string> RandomSerial() {
  unsigned char buf[16];
  do {
    if (RAND_bytes(buf, sizeof(buf)) != 1) return OpenSslError("generating serial");
  } while (std::all_of(buf, buf + sizeof(buf), [](unsigned char c) { return c == 0; }));
  return std::string(reinterpret_cast<char*>(buf), sizeof(buf));
}

// Validates a DNS SAN: LDH labels, optional leading "*." wildcard.
absl::Status ValidateDnsName(const std::string& name) {
  if (name.empty() || name.size() > kMaxDnsNameLength) {
    return absl::InvalidArgumentError("DNS name \"" + name.substr(0, 64) + "\" has a bad length");
  }
  std::string_view rest = name;
  if (rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  size_t label_len = 0;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == '.') {
      if (label_len == 0 || label_len > 63) {
        return absl::InvalidArgumentError("DNS name \"" + name + "\" has an empty or long label");
      }
      if (rest[i - 1] == '-' || rest[i - label_len] == '-') {
        return absl::InvalidArgumentError("DNS name \"" + name + "\" has a label edged by '-'");
      }
      label_len = 0;
      continue;
    }
    char c = rest[i];
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return absl::InvalidArgumentError("DNS name \"" + name + "\" has a bad character");
    ++label_len;
  }
  return absl::OkStatus();
}

// X509v3 extension via OpenSSL's configuration syntax (CA builders only).
absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid)));
  }
  return absl::OkStatus();
}

absl::Status ValidateCaSubject(const CaSubject& s) {
  if (s.country.size() > 2)
    return absl::InvalidArgumentError("CA subject country is not 2 letters");
  if (s.organization.size() > 64 || s.common_name.size() > 64) {
    return absl::InvalidArgumentError("CA subject attribute longer than 64 bytes");
  }
  return absl::OkStatus();
}

// Shared by the root and intermediate builders: everything except issuer, AKI and signing.
absl::StatusOr<X509Ptr> NewCaCertificate(const PublicKey& pub, const TrustDomain& td,
                                         absl::Time not_before, absl::Time not_after,
                                         const CaSubject& subject) {
  TRELLIS_RETURN_IF_ERROR(ValidateCaSubject(subject));
  X509Ptr x(X509_new());
  if (!x || X509_set_version(x.get(), 2) != 1) return OpenSslError("creating certificate");
  TRELLIS_ASSIGN_OR_RETURN(std::string serial, RandomSerial());
  BignumPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()),
                         static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get())) == nullptr) {
    return OpenSslError("setting serial");
  }
  X509_NAME* name = X509_get_subject_name(x.get());
  auto add = [&](const char* field, const std::string& v) {
    return v.empty() || X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                                   reinterpret_cast<const unsigned char*>(v.data()),
                                                   static_cast<int>(v.size()), -1, 0) == 1;
  };
  if (!add("C", subject.country) || !add("O", subject.organization) ||
      !add("CN", subject.common_name)) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "setting CA subject");
  }
  if (ASN1_TIME_set(X509_getm_notBefore(x.get()), absl::ToTimeT(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x.get()), absl::ToTimeT(not_after)) == nullptr) {
    return OpenSslError("setting validity");
  }
  if (X509_set_pubkey(x.get(), pub.pkey()) != 1) return OpenSslError("setting public key");
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), nullptr, NID_basic_constraints, "critical,CA:TRUE"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), nullptr, NID_key_usage, "critical,keyCertSign,cRLSign"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), nullptr, NID_subject_key_identifier, "hash"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), nullptr, NID_subject_alt_name, "URI:" + td.IdString()));
  return x;
}

absl::StatusOr<std::string> SignAndEncode(X509* x, const PrivateKey& key) {
  if (X509_sign(x, key.pkey(), HashMd(key.DefaultHash())) <= 0) {
    return OpenSslError("signing certificate");
  }
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  if (len <= 0) return OpenSslError("encoding certificate");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string SigAlgDer(const PrivateKey& key) {
  switch (key.type()) {
    case KeyType::kEcP256:
      return std::string("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02"sv);
    case KeyType::kEcP384:
      return std::string("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03"sv);
    case KeyType::kEcP521:
      return std::string("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x04"sv);
    default:  // sha256WithRSAEncryption, NULL parameters
      return std::string("\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00"sv);
  }
}

// SHA-1 of the subjectPublicKey BIT STRING value (RFC 5280 4.2.1.2 method 1).
absl::StatusOr<std::string> KeyIdOfSpki(std::string_view spki) {
  der::Reader r(spki);
  TRELLIS_ASSIGN_OR_RETURN(der::Element seq, r.Read(der::kSequence));
  der::Reader in(seq.content);
  TRELLIS_ASSIGN_OR_RETURN(der::Element alg, in.Read(der::kSequence));
  (void)alg;
  TRELLIS_ASSIGN_OR_RETURN(der::Element bits, in.Read(der::kBitString));
  if (bits.content.empty()) return absl::InvalidArgumentError("empty public key");
  return Sha1(bits.content.substr(1));
}

constexpr size_t kMaxPooledSignContexts = 16;

// Fixed extension encodings of the leaf profile.
constexpr std::string_view kExtBasicConstraintsLeaf =
    "\x30\x0c\x06\x03\x55\x1d\x13\x01\x01\xff\x04\x02\x30\x00"sv;
// keyUsage critical digitalSignature
constexpr std::string_view kExtKeyUsageEc =
    "\x30\x0e\x06\x03\x55\x1d\x0f\x01\x01\xff\x04\x04\x03\x02\x07\x80"sv;
// keyUsage critical digitalSignature + keyEncipherment (RSA keys may do key transport)
constexpr std::string_view kExtKeyUsageRsa =
    "\x30\x0e\x06\x03\x55\x1d\x0f\x01\x01\xff\x04\x04\x03\x02\x05\xa0"sv;
// extKeyUsage serverAuth, clientAuth
constexpr std::string_view kExtEku =
    "\x30\x1d\x06\x03\x55\x1d\x25\x04\x16\x30\x14"
    "\x06\x08\x2b\x06\x01\x05\x05\x07\x03\x01\x06\x08\x2b\x06\x01\x05\x05\x07\x03\x02"sv;
constexpr std::string_view kVersion3 = "\xa0\x03\x02\x01\x02"sv;
constexpr std::string_view kEmptyName = "\x30\x00"sv;

}  // namespace

// ---- Certificate ----

absl::StatusOr<Certificate> Certificate::FromOwned(X509* raw, std::string der) {
  X509Ptr x(raw);
  // Force extension caching now so that malformed extensions are reported at parse time.
  if (X509_get_extension_flags(x.get()) & EXFLAG_INVALID) {
    return absl::InvalidArgumentError("certificate has malformed or duplicate extensions");
  }
  auto pub = PublicKey::SharePublicEvpPkey(X509_get0_pubkey(x.get()));
  if (!pub.ok()) return Annotate(pub.status(), "certificate public key");
  absl::Time nb = Asn1ToTime(X509_get0_notBefore(x.get()));
  absl::Time na = Asn1ToTime(X509_get0_notAfter(x.get()));
  return Certificate(ShareX509(x.release()), std::move(der), *std::move(pub), nb, na);
}

absl::StatusOr<Certificate> Certificate::FromDer(std::string_view der) {
  if (der.empty()) return absl::InvalidArgumentError("empty certificate DER");
  // Bound the element to its own length so trailing bytes are detected.
  der::Reader r(der);
  auto elem = r.Read(der::kSequence);
  if (!elem.ok()) return Annotate(elem.status(), "certificate");
  if (!r.empty()) return absl::InvalidArgumentError("trailing bytes after certificate DER");
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (x == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed certificate DER");
  }
  return FromOwned(x, std::string(der));
}

absl::StatusOr<Certificate> Certificate::FromPem(std::string_view pem) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<std::string> blocks, PemCertificateBlocks(pem));
  if (blocks.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PEM: expected one certificate, found ", blocks.size()));
  }
  return FromDer(blocks[0]);
}

absl::StatusOr<std::vector<Certificate>> Certificate::ChainFromDer(std::string_view der) {
  if (der.empty()) return absl::InvalidArgumentError("empty certificate chain");
  std::vector<Certificate> out;
  der::Reader r(der);
  while (!r.empty()) {
    auto elem = r.Read(der::kSequence);
    if (!elem.ok()) {
      return Annotate(elem.status(), absl::StrCat("certificate ", out.size() + 1, " of chain"));
    }
    auto cert = FromDer(elem->encoded);
    if (!cert.ok()) {
      return Annotate(cert.status(), absl::StrCat("certificate ", out.size() + 1, " of chain"));
    }
    out.push_back(*std::move(cert));
  }
  return out;
}

absl::StatusOr<std::vector<Certificate>> Certificate::ChainFromPem(std::string_view pem) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<std::string> blocks, PemCertificateBlocks(pem));
  std::vector<Certificate> out;
  for (const auto& der : blocks) {
    auto cert = FromDer(der);
    if (!cert.ok()) {
      return Annotate(cert.status(), absl::StrCat("PEM certificate ", out.size() + 1));
    }
    out.push_back(*std::move(cert));
  }
  return out;
}

std::string Certificate::ChainToDer(const std::vector<Certificate>& chain) {
  std::string out;
  for (const auto& c : chain) out += c.der();
  return out;
}

std::string Certificate::ChainToPem(const std::vector<Certificate>& chain) {
  std::string out;
  for (const auto& c : chain) out += c.ToPem();
  return out;
}

std::string Certificate::ToPem() const { return PemBlock("CERTIFICATE", der_); }

std::string Certificate::SerialHex() const {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509_.get()), nullptr));
  if (!bn) return "";
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
  return bytes.empty() ? "00" : HexEncode(bytes);
}

std::string Certificate::Subject() const {
  return NameToString(X509_get_subject_name(x509_.get()));
}
std::string Certificate::Issuer() const { return NameToString(X509_get_issuer_name(x509_.get())); }

std::string Certificate::SubjectNameDer() const {
  const unsigned char* der = nullptr;
  size_t len = 0;
  X509_NAME_get0_der(X509_get_subject_name(x509_.get()), &der, &len);
  return std::string(reinterpret_cast<const char*>(der), len);
}

std::vector<std::string> Certificate::UriSans() const { return SansOfType(x509_.get(), GEN_URI); }
std::vector<std::string> Certificate::DnsSans() const { return SansOfType(x509_.get(), GEN_DNS); }

absl::StatusOr<SpiffeId> Certificate::GetSpiffeId() const {
  std::vector<std::string> uris = UriSans();
  if (uris.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate has ", uris.size(), " URI SANs, want exactly one SPIFFE ID"));
  }
  auto id = SpiffeId::Parse(uris[0]);
  if (!id.ok()) return Annotate(id.status(), "certificate URI SAN");
  return id;
}

bool Certificate::IsCa() const {
  // basicConstraints cA = TRUE; key usage is checked separately where it matters.
  uint32_t flags = X509_get_extension_flags(x509_.get());
  return (flags & EXFLAG_BCONS) && (flags & EXFLAG_CA);
}

uint32_t Certificate::key_usage() const {
  if (!HasKeyUsageExtension()) return 0;
  return X509_get_key_usage(x509_.get());
}

bool Certificate::HasKeyUsageExtension() const {
  return (X509_get_extension_flags(x509_.get()) & EXFLAG_KUSAGE) != 0;
}

std::string Certificate::SubjectKeyId() const {
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(x509_.get());
  if (ski == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski)),
                     static_cast<size_t>(ASN1_STRING_length(ski)));
}

std::string Certificate::AuthorityKeyId() const {
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(x509_.get());
  if (aki == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(aki)),
                     static_cast<size_t>(ASN1_STRING_length(aki)));
}

std::string Certificate::Sha1Fingerprint() const { return HexEncode(Sha1(der_)); }
std::string Certificate::Sha256Fingerprint() const { return HexEncode(Sha256(der_)); }

// ---- CA builders ----

absl::StatusOr<Certificate> CreateRootCa(const PrivateKey& key, const TrustDomain& td,
                                         absl::Duration ttl, const Clock& clock,
                                         const CaSubject& subject) {
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("CA TTL must be positive");
  absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(clock.Now()));
  TRELLIS_ASSIGN_OR_RETURN(
      X509Ptr x, NewCaCertificate(key.public_key(), td, now - kBackdate, now + ttl, subject));
  if (X509_set_issuer_name(x.get(), X509_get_subject_name(x.get())) != 1) {
    return OpenSslError("setting issuer");
  }
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), x.get(), NID_authority_key_identifier, "keyid:always"));
  TRELLIS_ASSIGN_OR_RETURN(std::string der, SignAndEncode(x.get(), key));
  return Certificate::FromDer(der);
}

absl::StatusOr<Certificate> CreateIntermediateCa(const Certificate& parent,
                                                 const PrivateKey& parent_key,
                                                 const PublicKey& ca_public_key,
                                                 const TrustDomain& td, absl::Duration ttl,
                                                 const Clock& clock, const CaSubject& subject) {
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("CA TTL must be positive");
  if (!parent.IsCa() || !(parent.key_usage() & kKeyUsageKeyCertSign)) {
    return absl::FailedPreconditionError("parent certificate is not a CA with keyCertSign");
  }
  if (!CheckKeyMatchesCertificate(parent_key, parent).ok()) {
    return absl::FailedPreconditionError("parent key does not match the parent certificate");
  }
  auto parent_id = parent.GetSpiffeId();
  if (parent_id.ok() && !parent_id->MemberOf(td)) {
    return absl::InvalidArgumentError("trust domain " + td.name() +
                                      " differs from the parent CA's " +
                                      parent_id->trust_domain().name());
  }
  absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(clock.Now()));
  if (now >= parent.not_after()) return absl::FailedPreconditionError("parent CA has expired");
  absl::Time not_after = std::min(now + ttl, parent.not_after());
  TRELLIS_ASSIGN_OR_RETURN(
      X509Ptr x, NewCaCertificate(ca_public_key, td, now - kBackdate, not_after, subject));
  if (X509_set_issuer_name(x.get(), X509_get_subject_name(parent.x509())) != 1) {
    return OpenSslError("setting issuer");
  }
  TRELLIS_RETURN_IF_ERROR(
      AddExt(x.get(), parent.x509(), NID_authority_key_identifier, "keyid:always"));
  TRELLIS_ASSIGN_OR_RETURN(std::string der, SignAndEncode(x.get(), parent_key));
  return Certificate::FromDer(der);
}

absl::Status CheckKeyMatchesCertificate(const PrivateKey& key, const Certificate& cert) {
  if (key.spki_der() != cert.public_key().spki_der()) {
    return absl::InvalidArgumentError("private key does not match the certificate's public key");
  }
  return absl::OkStatus();
}

// ---- X509SvidIssuer ----

absl::StatusOr<std::unique_ptr<X509SvidIssuer>> X509SvidIssuer::Create(Certificate ca,
                                                                       PrivateKey ca_key,
                                                                       const Clock& clock) {
  if (!ca.IsCa() || !(ca.key_usage() & kKeyUsageKeyCertSign)) {
    return absl::FailedPreconditionError("issuer certificate is not a CA with keyCertSign");
  }
  if (!CheckKeyMatchesCertificate(ca_key, ca).ok()) {
    return absl::FailedPreconditionError("CA key does not match the CA certificate");
  }
  std::string ski = ca.SubjectKeyId();
  if (ski.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(ski, KeyIdOfSpki(ca.public_key().spki_der()));
  }
  std::unique_ptr<X509SvidIssuer> issuer(
      new X509SvidIssuer(std::move(ca), std::move(ca_key), clock));
  auto id = issuer->ca_.GetSpiffeId();
  if (id.ok()) issuer->ca_trust_domain_ = id->trust_domain();
  issuer->issuer_name_der_ = issuer->ca_.SubjectNameDer();
  // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
  std::string aki_value = der::Tlv(der::kSequence, der::Tlv(der::ContextPrimitive(0), ski));
  std::string ext = der::Tlv(der::kOid, "\x55\x1d\x23"sv);
  der::AppendTlv(&ext, der::kOctetString, aki_value);
  issuer->aki_extension_der_ = der::Tlv(der::kSequence, ext);
  issuer->sig_alg_der_ = SigAlgDer(issuer->ca_key_);
  issuer->hash_ = issuer->ca_key_.DefaultHash();
  issuer->ca_not_after_ = absl::ToUnixSeconds(issuer->ca_.not_after());
  return issuer;
}

absl::StatusOr<std::string> X509SvidIssuer::IssueFromCsr(std::string_view csr_der,
                                                         const SpiffeId& id, absl::Duration ttl,
                                                         const std::vector<std::string>& dns_names,
                                                         absl::Time* not_after) const {
  TRELLIS_ASSIGN_OR_RETURN(internal::CsrView csr, internal::ParseCsrView(csr_der));
  TRELLIS_RETURN_IF_ERROR(internal::VerifyCsrView(csr));
  return Issue(csr.spki, csr.rsa, id, ttl, dns_names, not_after);
}

absl::StatusOr<std::string> X509SvidIssuer::IssueForPublicKey(
    const PublicKey& key, const SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names) const {
  return Issue(key.spki_der(), !IsEcKeyType(key.type()), id, ttl, dns_names, nullptr);
}

absl::StatusOr<std::string> X509SvidIssuer::Issue(std::string_view spki, bool rsa_key,
                                                  const SpiffeId& id, absl::Duration ttl,
                                                  const std::vector<std::string>& dns_names,
                                                  absl::Time* not_after_out) const {
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("SVID TTL must be positive");
  if (id.IsTrustDomainId()) {
    return absl::InvalidArgumentError("X509-SVID ID " + id.String() + " has no path");
  }
  if (ca_trust_domain_.has_value() && !id.MemberOf(*ca_trust_domain_)) {
    return absl::InvalidArgumentError("SPIFFE ID " + id.String() +
                                      " is outside the CA's trust domain " +
                                      ca_trust_domain_->name());
  }
  if (dns_names.size() > kMaxDnsNames) return absl::InvalidArgumentError("too many DNS names");
  for (const auto& name : dns_names) TRELLIS_RETURN_IF_ERROR(ValidateDnsName(name));

  int64_t now = absl::ToUnixSeconds(clock_.Now());
  if (now >= ca_not_after_) return absl::FailedPreconditionError("issuing CA has expired");
  int64_t ttl_s = std::max<int64_t>(1, absl::ToInt64Seconds(ttl));
  int64_t not_after = now > ca_not_after_ - ttl_s ? ca_not_after_ : now + ttl_s;
  int64_t not_before = now - absl::ToInt64Seconds(kBackdate);

  TRELLIS_ASSIGN_OR_RETURN(std::string serial, RandomSerial());
  TRELLIS_ASSIGN_OR_RETURN(std::string ski, KeyIdOfSpki(spki));

  // SubjectAltName: the URI first, then DNS names. Critical because the subject is empty.
  std::string names;
  der::AppendTlv(&names, der::ContextPrimitive(6), id.String());
  for (const auto& dns : dns_names) der::AppendTlv(&names, der::ContextPrimitive(2), dns);
  std::string san_ext = der::Tlv(der::kOid, "\x55\x1d\x11"sv);
  san_ext.append("\x01\x01\xff"sv);
  der::AppendTlv(&san_ext, der::kOctetString, der::Tlv(der::kSequence, names));

  std::string ski_ext = der::Tlv(der::kOid, "\x55\x1d\x0e"sv);
  der::AppendTlv(&ski_ext, der::kOctetString, der::Tlv(der::kOctetString, ski));

  std::string exts;
  exts.reserve(256 + names.size());
  exts.append(kExtBasicConstraintsLeaf);
  exts.append(rsa_key ? kExtKeyUsageRsa : kExtKeyUsageEc);
  exts.append(kExtEku);
  der::AppendTlv(&exts, der::kSequence, ski_ext);
  exts.append(aki_extension_der_);
  der::AppendTlv(&exts, der::kSequence, san_ext);

  TRELLIS_ASSIGN_OR_RETURN(std::string nb, der::Time(not_before));
  TRELLIS_ASSIGN_OR_RETURN(std::string na, der::Time(not_after));

  std::string body;
  body.reserve(512 + spki.size() + exts.size() + issuer_name_der_.size());
  body.append(kVersion3);
  body.append(der::UnsignedInteger(serial));
  body.append(sig_alg_der_);
  body.append(issuer_name_der_);
  der::AppendTlv(&body, der::kSequence, nb + na);
  body.append(kEmptyName);
  body.append(spki);
  der::AppendTlv(&body, der::ContextConstructed(3), der::Tlv(der::kSequence, exts));
  std::string tbs = der::Tlv(der::kSequence, body);

  TRELLIS_ASSIGN_OR_RETURN(std::string sig, SignDigest(tbs));
  std::string sig_bits;
  sig_bits.reserve(sig.size() + 1);
  sig_bits.push_back('\0');
  sig_bits.append(sig);
  std::string cert_body;
  cert_body.reserve(tbs.size() + sig_alg_der_.size() + sig_bits.size() + 8);
  cert_body.append(tbs);
  cert_body.append(sig_alg_der_);
  der::AppendTlv(&cert_body, der::kBitString, sig_bits);
  if (not_after_out != nullptr) *not_after_out = absl::FromUnixSeconds(not_after);
  return der::Tlv(der::kSequence, cert_body);
}

absl::StatusOr<std::string> X509SvidIssuer::SignDigest(std::string_view tbs) const {
  const EVP_MD* md = HashMd(hash_);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(tbs.data(), tbs.size(), digest, &digest_len, md, nullptr) != 1) {
    return OpenSslError("hashing TBSCertificate");
  }
  EvpPkeyCtxPtr ctx;
  {
    absl::MutexLock lock(&pool_mu_);
    if (!sign_ctx_pool_.empty()) {
      ctx = std::move(sign_ctx_pool_.back());
      sign_ctx_pool_.pop_back();
    }
  }
  if (!ctx) {
    ctx.reset(EVP_PKEY_CTX_new(ca_key_.pkey(), nullptr));
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
      return OpenSslError("initialising SVID signature");
    }
  }
  size_t sig_len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &sig_len, digest, digest_len) != 1) {
    return OpenSslError("sizing SVID signature");
  }
  std::string sig(sig_len, '\0');
  if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len, digest,
                    digest_len) != 1) {
    return OpenSslError("signing SVID");
  }
  sig.resize(sig_len);
  absl::MutexLock lock(&pool_mu_);
  if (sign_ctx_pool_.size() < kMaxPooledSignContexts) sign_ctx_pool_.push_back(std::move(ctx));
  return sig;
}

// ---- Verification ----

namespace {

// Builds and checks the path from chain[0] through chain[1..] to one of `authorities` (each a
// trust anchor) at `now`; every certificate above chain[0] must be a CA with keyCertSign.
absl::Status VerifyPath(const std::vector<Certificate>& chain,
                        const std::vector<Certificate>& authorities, absl::Time now,
                        const std::function<absl::Status(const std::string&)>& fail) {
  const Certificate& leaf = chain[0];
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return OpenSslError("allocating verification state");
  for (const auto& root : authorities) {
    if (X509_STORE_add_cert(store.get(), root.x509()) != 1) {
      ClearOpenSslErrors();  // duplicates are harmless
    }
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].x509());
    if (sk_X509_push(untrusted.get(), chain[i].x509()) <= 0) {
      X509_free(chain[i].x509());
      return OpenSslError("building chain");
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.x509(), untrusted.get()) != 1) {
    return OpenSslError("initialising verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(now));
  // Every bundle authority is a trust anchor, self-signed or not.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(kMaxChainLength));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ClearOpenSslErrors();
    return fail(X509_verify_cert_error_string(err));
  }
  // The anchors reached must also be CAs with keyCertSign.
  STACK_OF(X509)* built = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 1; i < sk_X509_num(built); ++i) {
    X509* c = sk_X509_value(built, i);
    if (!X509_check_ca(c) || !(X509_get_key_usage(c) & KU_KEY_CERT_SIGN)) {
      return fail(absl::StrCat("chain certificate ", i + 1, " is not a CA with keyCertSign"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpiffeId> VerifyX509Svid(const std::vector<Certificate>& chain,
                                        const std::vector<Certificate>& authorities,
                                        const TrustDomain& trust_domain, absl::Time now) {
  if (chain.empty()) return absl::InvalidArgumentError("empty X509-SVID chain");
  if (chain.size() > kMaxChainLength) {
    return absl::InvalidArgumentError(absl::StrCat("X509-SVID chain has ", chain.size(),
                                                   " certificates (max ", kMaxChainLength, ")"));
  }
  auto fail = [](const std::string& why) {
    return absl::UnauthenticatedError("X509-SVID: " + why);
  };
  const Certificate& leaf = chain[0];
  auto id = leaf.GetSpiffeId();
  if (!id.ok()) return fail(std::string(id.status().message()));
  if (id->IsTrustDomainId()) return fail("leaf SPIFFE ID has no path");
  if (!id->MemberOf(trust_domain)) {
    return fail("leaf SPIFFE ID " + id->String() + " is not in trust domain " +
                trust_domain.name());
  }
  if (leaf.IsCa()) return fail("leaf is a CA certificate");
  uint32_t ku = leaf.key_usage();
  if (!(ku & kKeyUsageDigitalSignature)) return fail("leaf key usage lacks digitalSignature");
  if (ku & (kKeyUsageKeyCertSign | kKeyUsageCrlSign)) {
    return fail("leaf key usage has keyCertSign or cRLSign");
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (!chain[i].IsCa() || !(chain[i].key_usage() & kKeyUsageKeyCertSign)) {
      return fail(absl::StrCat("chain certificate ", i + 1, " is not a CA with keyCertSign"));
    }
  }
  if (authorities.empty())
    return fail("no X.509 authorities for trust domain " + trust_domain.name());

  TRELLIS_RETURN_IF_ERROR(VerifyPath(chain, authorities, now, fail));
  return *std::move(id);
}

absl::Status VerifyCaChain(const std::vector<Certificate>& chain,
                           const std::vector<Certificate>& authorities,
                           const TrustDomain& trust_domain, absl::Time now) {
  if (chain.empty()) return absl::InvalidArgumentError("empty CA chain");
  if (chain.size() > kMaxChainLength) {
    return absl::InvalidArgumentError(absl::StrCat("CA chain has ", chain.size(),
                                                   " certificates (max ", kMaxChainLength, ")"));
  }
  auto fail = [](const std::string& why) {
    return absl::UnauthenticatedError("CA chain: " + why);
  };
  if (authorities.empty()) return fail("no X.509 authorities to verify against");
  for (size_t i = 0; i < chain.size(); ++i) {
    if (!chain[i].IsCa() || !(chain[i].key_usage() & kKeyUsageKeyCertSign)) {
      return fail(absl::StrCat("certificate ", i + 1, " is not a CA with keyCertSign"));
    }
  }
  auto id = chain[0].GetSpiffeId();
  if (!id.ok()) return fail(std::string(id.status().message()));
  if (!id->IsTrustDomainId() || !id->MemberOf(trust_domain)) {
    return fail("CA URI SAN " + id->String() + " is not the trust domain ID of " +
                trust_domain.name());
  }
  return VerifyPath(chain, authorities, now, fail);
}

// ---- Reference path ----

absl::StatusOr<std::string> IssueX509SvidWithOpenSsl(const Certificate& ca,
                                                     const PrivateKey& ca_key,
                                                     std::string_view csr_der, const SpiffeId& id,
                                                     absl::Duration ttl, const Clock& clock) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(csr_der.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr_der.size())));
  if (!req) return OpenSslError(absl::StatusCode::kInvalidArgument, "malformed CSR");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (pub == nullptr || X509_REQ_verify(req.get(), pub) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "CSR signature");
  }
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  TRELLIS_ASSIGN_OR_RETURN(std::string serial, RandomSerial());
  BignumPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()),
                         static_cast<int>(serial.size()), nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()));
  X509_set_issuer_name(x.get(), X509_get_subject_name(ca.x509()));
  int64_t now = absl::ToUnixSeconds(clock.Now());
  int64_t na = std::min(now + absl::ToInt64Seconds(ttl), absl::ToUnixSeconds(ca.not_after()));
  ASN1_TIME_set(X509_getm_notBefore(x.get()), static_cast<time_t>(now - 10));
  ASN1_TIME_set(X509_getm_notAfter(x.get()), static_cast<time_t>(na));
  if (X509_set_pubkey(x.get(), pub) != 1) return OpenSslError("setting public key");
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), ca.x509(), NID_basic_constraints, "critical,CA:FALSE"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), ca.x509(), NID_key_usage, "critical,digitalSignature"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), ca.x509(), NID_ext_key_usage, "serverAuth,clientAuth"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), ca.x509(), NID_subject_key_identifier, "hash"));
  TRELLIS_RETURN_IF_ERROR(AddExt(x.get(), ca.x509(), NID_authority_key_identifier, "keyid"));
  TRELLIS_RETURN_IF_ERROR(
      AddExt(x.get(), ca.x509(), NID_subject_alt_name, "critical,URI:" + id.String()));
  return SignAndEncode(x.get(), ca_key);
}

}  // namespace trellis::common

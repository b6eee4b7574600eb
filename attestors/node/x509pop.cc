// x509pop attestation: chain verification to the configured CAs, then a signed challenge.
#include "attestors/node/x509pop.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/file_util.h"
#include "common/openssl_util.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

// A chain of 8 certificates with generous 8 KiB each; anything bigger is not a real chain.
constexpr size_t kMaxPayloadBytes = kX509PopMaxChain * 8192;

absl::Status CheckKeySize(const common::Certificate& cert) {
  const auto& key = cert.public_key();
  if (common::IsEcKeyType(key.type())) return absl::OkStatus();
  const int bits = key.bits();
  if (bits < common::kMinRsaBits || bits > common::kMaxRsaBits) {
    return absl::PermissionDeniedError("x509pop: RSA key of " + std::to_string(bits) +
                                       " bits is outside 2048..8192");
  }
  return absl::OkStatus();
}

std::string Asn1StringToUtf8(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

std::string IpToString(const ASN1_OCTET_STRING* ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int len = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  if (len == 4 && inet_ntop(AF_INET, data, buf, sizeof(buf)) != nullptr) return buf;
  if (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof(buf)) != nullptr) return buf;
  return "";
}

std::vector<datastore::Selector> LeafSelectors(const common::Certificate& leaf) {
  std::vector<datastore::Selector> out;
  auto add = [&](const std::string& v) { out.push_back({kX509PopName, v}); };
  X509_NAME* subject = X509_get_subject_name(leaf.x509());
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    add("subject:cn:" +
        Asn1StringToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i))));
  }
  add("serialnumber:" + leaf.SerialHex());
  common::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf.x509(), NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      switch (gn->type) {
        case GEN_DNS:
          add("san:dns:" + Asn1StringToUtf8(gn->d.dNSName));
          break;
        case GEN_URI:
          add("san:uri:" + Asn1StringToUtf8(gn->d.uniformResourceIdentifier));
          break;
        case GEN_EMAIL:
          add("san:email:" + Asn1StringToUtf8(gn->d.rfc822Name));
          break;
        case GEN_IPADD:
          if (std::string ip = IpToString(gn->d.iPAddress); !ip.empty()) add("san:ip:" + ip);
          break;
        default:
          break;
      }
    }
  }
  return out;
}

}  // namespace

std::string X509PopSignedMessage(std::string_view challenge) {
  std::string msg(kX509PopContext);
  msg.append(challenge);
  return msg;
}

absl::StatusOr<std::unique_ptr<X509PopServerAttestor>> X509PopServerAttestor::Create(
    common::TrustDomain td, const std::vector<std::string>& ca_bundle_paths,
    const common::Clock& clock) {
  if (ca_bundle_paths.empty()) {
    return absl::InvalidArgumentError("NodeAttestor \"x509pop\" needs ca_bundle_path(s)");
  }
  std::vector<common::Certificate> cas;
  for (const auto& path : ca_bundle_paths) {
    TRELLIS_ASSIGN_OR_RETURN(std::string pem, common::ReadFile(path));
    auto certs = common::Certificate::ChainFromPem(pem);
    if (!certs.ok()) return Annotate(certs.status(), "x509pop ca_bundle_path " + path);
    for (auto& c : *certs) cas.push_back(std::move(c));
  }
  return CreateFromCerts(std::move(td), std::move(cas), clock);
}

absl::StatusOr<std::unique_ptr<X509PopServerAttestor>> X509PopServerAttestor::CreateFromCerts(
    common::TrustDomain td, std::vector<common::Certificate> cas, const common::Clock& clock) {
  if (cas.empty()) return absl::InvalidArgumentError("x509pop: no CA certificates configured");
  return std::unique_ptr<X509PopServerAttestor>(
      new X509PopServerAttestor(std::move(td), std::move(cas), clock));
}

absl::StatusOr<ServerNodeAttestor::Result> X509PopServerAttestor::Attest(
    std::string_view payload,
    const std::function<absl::StatusOr<std::string>(std::string)>& challenge) {
  if (payload.empty()) return absl::InvalidArgumentError("x509pop: empty certificate chain");
  if (payload.size() > kMaxPayloadBytes) {
    return absl::InvalidArgumentError("x509pop: certificate chain payload is too large");
  }
  auto parsed = common::Certificate::ChainFromDer(payload);
  if (!parsed.ok()) return Annotate(parsed.status(), "x509pop: agent certificate chain");
  const std::vector<common::Certificate>& chain = *parsed;
  // Bounds first: no signature work for a chain or key size that could only cost CPU.
  if (chain.size() > kX509PopMaxChain) {
    return absl::PermissionDeniedError("x509pop: certificate chain has " +
                                       std::to_string(chain.size()) + " certificates, at most " +
                                       std::to_string(kX509PopMaxChain) + " are accepted");
  }
  for (const auto& c : chain) TRELLIS_RETURN_IF_ERROR(CheckKeySize(c));
  const common::Certificate& leaf = chain.front();
  // A CA presented as the leaf would verify against itself when it is a configured CA.
  if (leaf.IsCa()) {
    return absl::PermissionDeniedError("x509pop: leaf certificate is a CA certificate");
  }
  if (leaf.HasKeyUsageExtension() && (leaf.key_usage() & common::kKeyUsageDigitalSignature) == 0) {
    return absl::PermissionDeniedError(
        "x509pop: leaf certificate key usage lacks digitalSignature");
  }

  // Plain X.509 path validation to any configured CA (each one is a trust anchor).
  common::X509StorePtr store(X509_STORE_new());
  common::X509StackPtr untrusted(sk_X509_new_null());
  common::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return absl::ResourceExhaustedError("x509pop: out of memory");
  for (const auto& ca : cas_) {
    if (X509_STORE_add_cert(store.get(), ca.x509()) != 1) {
      common::ClearOpenSslErrors();  // a duplicate CA is harmless
    }
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].x509());
    if (sk_X509_push(untrusted.get(), chain[i].x509()) <= 0) {
      X509_free(chain[i].x509());
      return absl::ResourceExhaustedError("x509pop: out of memory");
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.x509(), untrusted.get()) != 1) {
    return common::OpenSslError("x509pop: verification context");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(clock_.Now()));
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(kX509PopMaxChain));
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    common::ClearOpenSslErrors();
    return absl::PermissionDeniedError(
        std::string("x509pop: certificate chain does not verify to a configured CA: ") +
        X509_verify_cert_error_string(err));
  }
  std::vector<std::string> ca_fingerprints;
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 1; i < sk_X509_num(verified); ++i) {
    X509* ca = sk_X509_value(verified, i);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(ca, EVP_sha1(), md, &md_len) != 1) {
      return common::OpenSslError("x509pop: CA fingerprint");
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int b = 0; b < md_len; ++b) {
      hex.push_back(kHex[md[b] >> 4]);
      hex.push_back(kHex[md[b] & 0xf]);
    }
    ca_fingerprints.push_back(std::move(hex));
  }

  // Proof of possession of the leaf key.
  std::string nonce(kX509PopChallengeSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    return absl::InternalError("x509pop: random number generator failed");
  }
  auto response = challenge(nonce);
  if (!response.ok()) return Annotate(response.status(), "x509pop: challenge");
  const bool rsa = !common::IsEcKeyType(leaf.public_key().type());
  if (auto s = leaf.public_key().Verify(X509PopSignedMessage(nonce), *response,
                                        common::HashAlg::kSha256, /*pss=*/rsa);
      !s.ok()) {
    return absl::PermissionDeniedError("x509pop: challenge signature does not verify");
  }

  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId agent_id,
                           common::AgentId(td_, kX509PopName, leaf.Sha1Fingerprint()));
  Result result{std::move(agent_id), LeafSelectors(leaf), /*reattestable=*/true};
  for (const auto& fp : ca_fingerprints) {
    result.selectors.push_back({kX509PopName, "ca:fingerprint:" + fp});
  }
  return result;
}

absl::StatusOr<std::unique_ptr<X509PopAgentAttestor>> X509PopAgentAttestor::Create(
    const std::string& private_key_path, const std::string& certificate_path,
    const std::string& intermediates_path) {
  if (private_key_path.empty() || certificate_path.empty()) {
    return absl::InvalidArgumentError(
        "NodeAttestor \"x509pop\" needs private_key_path and certificate_path");
  }
  auto key = common::ReadPrivateKeyFile(private_key_path);
  if (!key.ok()) return Annotate(key.status(), "x509pop private_key_path " + private_key_path);
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem, common::ReadFile(certificate_path));
  auto chain = common::Certificate::ChainFromPem(cert_pem);
  if (!chain.ok()) return Annotate(chain.status(), "x509pop certificate_path " + certificate_path);
  if (!intermediates_path.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string pem, common::ReadFile(intermediates_path));
    auto more = common::Certificate::ChainFromPem(pem);
    if (!more.ok())
      return Annotate(more.status(), "x509pop intermediates_path " + intermediates_path);
    for (auto& c : *more) chain->push_back(std::move(c));
  }
  if (!common::CheckKeyMatchesCertificate(*key, chain->front()).ok()) {
    return absl::InvalidArgumentError("x509pop: private_key_path " + private_key_path +
                                      " does not match certificate_path " + certificate_path);
  }
  if (chain->size() > kX509PopMaxChain) {
    return absl::InvalidArgumentError("x509pop: certificate chain is longer than 8 certificates");
  }
  return std::make_unique<X509PopAgentAttestor>(std::move(*key), std::move(*chain));
}

absl::StatusOr<std::string> X509PopAgentAttestor::Payload() {
  return common::Certificate::ChainToDer(chain_);
}

absl::StatusOr<std::string> X509PopAgentAttestor::Answer(std::string_view challenge) {
  if (challenge.size() != kX509PopChallengeSize) {
    return absl::InvalidArgumentError("x509pop: challenge must be 32 bytes");
  }
  const bool rsa = !common::IsEcKeyType(key_.type());
  return key_.Sign(X509PopSignedMessage(challenge), common::HashAlg::kSha256, /*pss=*/rsa);
}

}  // namespace trellis::attestors

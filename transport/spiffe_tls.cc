// SPIFFE mTLS for gRPC: external verifiers that check peers against the current bundle.
#include "transport/spiffe_tls.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <list>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/bundle.h"
#include "common/openssl_util.h"
#include "common/x509.h"

namespace trellis::transport {
namespace {

// Checks the server side of a client connection. Runs synchronously inside the handshake.
class ServerIdVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  ServerIdVerifier(BundleSource bundle, common::SpiffeId expected, bool insecure_bootstrap)
      : bundle_(std::move(bundle)),
        expected_(std::move(expected)),
        insecure_bootstrap_(insecure_bootstrap) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    *sync_status = Check(request);
    return true;
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  grpc::Status Check(grpc::experimental::TlsCustomVerificationCheckRequest* request) const {
    const grpc::string_ref full = request->peer_cert_full_chain();
    const grpc::string_ref leaf_only = request->peer_cert();
    std::string pem(full.empty() ? leaf_only.data() : full.data(),
                    full.empty() ? leaf_only.size() : full.size());
    if (pem.empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "server presented no certificate");
    }
    auto chain = common::Certificate::ChainFromPem(pem);
    if (!chain.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "server certificate: " + std::string(chain.status().message()));
    }
    absl::StatusOr<common::SpiffeId> id = absl::InternalError("unset");
    if (insecure_bootstrap_) {
      id = chain->front().GetSpiffeId();
    } else {
      std::shared_ptr<const common::Bundle> bundle = bundle_ ? bundle_() : nullptr;
      if (bundle == nullptr) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "no trust bundle to verify the server against");
      }
      id = common::VerifyX509Svid(*chain, bundle->x509_authorities(), bundle->trust_domain(),
                                  absl::Now());
    }
    if (!id.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "server certificate: " + std::string(id.status().message()));
    }
    if (*id != expected_) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "server presented " + id->String() + ", expected " + expected_.String());
    }
    return grpc::Status::OK;
  }

  BundleSource bundle_;
  common::SpiffeId expected_;
  bool insecure_bootstrap_;
};

// The server accepts any client certificate at the TLS layer; handlers authenticate per call
// against the bundle of the moment, which also covers resumed sessions.
class AcceptAtHandshakeVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest*,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    *sync_status = grpc::Status::OK;
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}
};

// Verified identities by (chain PEM, bundle sequence, trust domain); bounded LRU.
class PeerCache {
 public:
  static PeerCache& Get() {
    static PeerCache* cache = new PeerCache();
    return *cache;
  }

  std::optional<PeerIdentity> Find(const std::string& key, absl::Time now) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    if (it->second->second.not_after <= now) {
      order_.erase(it->second);
      index_.erase(it);
      return std::nullopt;
    }
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  void Put(const std::string& key, const PeerIdentity& identity) {
    absl::MutexLock lock(&mu_);
    if (index_.count(key)) return;
    order_.emplace_front(key, identity);
    index_.emplace(key, order_.begin());
    if (order_.size() > kCapacity) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }

 private:
  // Above the agents one server serves (an agent's calls then never miss after the first).
  static constexpr size_t kCapacity = 65536;
  absl::Mutex mu_;
  std::list<std::pair<std::string, PeerIdentity>> order_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::list<std::pair<std::string, PeerIdentity>>::iterator> index_
      ABSL_GUARDED_BY(mu_);
};

std::string FirstProperty(const grpc::AuthContext& auth, const char* name) {
  auto values = auth.FindPropertyValues(name);
  if (values.empty()) return "";
  return std::string(values.front().data(), values.front().size());
}

}  // namespace

std::shared_ptr<grpc::ChannelCredentials> SpiffeClientCredentials(
    std::optional<TlsIdentity> identity, BundleSource bundle, common::SpiffeId expected_server_id,
    bool insecure_bootstrap) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  // Without roots of its own, gRPC loads and keeps the whole system CA store (about 800 KiB
  // of heap for the process's lifetime) although the verifier below never consults it. The
  // bundle's authorities, when known, stand in; verification is still the verifier's.
  std::shared_ptr<const common::Bundle> current = bundle ? bundle() : nullptr;
  std::string roots = current ? common::BundleToPem(*current) : "";
  if (identity.has_value() || !roots.empty()) {
    std::vector<grpc::experimental::IdentityKeyCertPair> pairs;
    if (identity.has_value()) {
      pairs.push_back({identity->private_key_pem, identity->cert_chain_pem});
    }
    options.set_certificate_provider(
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(roots, pairs));
    if (identity.has_value()) options.watch_identity_key_cert_pairs();
    if (!roots.empty()) options.watch_root_certs();
  }
  // gRPC's own checks assume Web PKI (roots file, host names); SPIFFE peers are checked by
  // the verifier below against the bundle current at the handshake.
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<ServerIdVerifier>(
          std::move(bundle), std::move(expected_server_id), insecure_bootstrap));
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> SpiffeServerCredentials(
    const std::string& cert_chain_file, const std::string& key_file) {
  // Fail early with a clear message rather than let gRPC log and serve nothing.
  for (const std::string& path : {cert_chain_file, key_file}) {
    if (::access(path.c_str(), R_OK) != 0) {
      return absl::FailedPreconditionError("cannot read TLS identity file " + path);
    }
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      key_file, cert_chain_file, /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<AcceptAtHandshakeVerifier>());
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<PeerIdentity> AuthenticatePeer(const grpc::ServerContextBase& ctx,
                                              const common::Bundle& bundle, absl::Time now) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr) return absl::UnauthenticatedError("caller presented no certificate");
  // On the server side OpenSSL's peer chain leaves out the leaf (it is its own property), so
  // a caller presenting intermediates (a workload under a nested server) needs both.
  const std::string leaf_pem = FirstProperty(*auth, GRPC_X509_PEM_CERT_PROPERTY_NAME);
  std::string pem = FirstProperty(*auth, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
  if (leaf_pem.empty() && pem.empty()) {
    return absl::UnauthenticatedError("caller presented no certificate");
  }
  if (pem.empty()) {
    pem = leaf_pem;
  } else if (!leaf_pem.empty() && pem.compare(0, leaf_pem.size(), leaf_pem) != 0) {
    pem = leaf_pem + pem;
  }

  // Keyed by a digest of the chain, so a server's whole fleet of agents fits in the cache at
  // a few hundred bytes each; a miss costs a chain parse and a signature check per call.
  std::string key = bundle.trust_domain().name() + "\n" + std::to_string(bundle.sequence()) +
                    "\n" + common::Sha256(pem);
  if (auto cached = PeerCache::Get().Find(key, now)) return *cached;

  auto chain = common::Certificate::ChainFromPem(pem);
  if (!chain.ok()) {
    return absl::UnauthenticatedError("caller certificate: " +
                                      std::string(chain.status().message()));
  }
  auto id = common::VerifyX509Svid(*chain, bundle.x509_authorities(), bundle.trust_domain(), now);
  if (!id.ok()) {
    return absl::UnauthenticatedError("caller certificate: " + std::string(id.status().message()));
  }
  PeerIdentity identity{*id, chain->front().SerialHex(), chain->front().not_after()};
  PeerCache::Get().Put(key, identity);
  return identity;
}

std::string PeerAddress(const grpc::ServerContextBase& ctx) {
  std::string peer = ctx.peer();
  if (peer.rfind("unix:", 0) == 0 || peer.rfind("fd:", 0) == 0) return "unix";
  std::string rest;
  if (peer.rfind("ipv4:", 0) == 0) {
    rest = peer.substr(5);
    return rest.substr(0, rest.rfind(':'));
  }
  if (peer.rfind("ipv6:", 0) == 0) {
    rest = peer.substr(5);
    if (!rest.empty() && rest.front() == '[') {
      size_t close = rest.find(']');
      return close == std::string::npos ? rest : rest.substr(1, close - 1);
    }
    return rest.substr(0, rest.rfind(':'));
  }
  return peer;
}

}  // namespace trellis::transport

// Bundle fetches on cpp-httplib's client. Under https_spiffe, OpenSSL's own chain building
// is replaced by the SVID check: the endpoint's trust anchors are the foreign trust
// domain's authorities, not Web PKI roots, and its name is a SPIFFE ID, not a host.
#include "federation/bundle_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/https_url.h"
#include "common/status.h"

namespace trellis::federation {
namespace {

constexpr size_t kMaxDocument = 1 << 20;

struct SpiffeCheck {
  const BundleEndpointSpec* spec;
  absl::Time now;
  std::string error;  // why the last handshake's peer was refused
};

absl::StatusOr<common::Certificate> ToCertificate(X509* x509) {
  unsigned char* der = nullptr;
  int len = i2d_X509(x509, &der);
  if (len <= 0) return absl::InvalidArgumentError("cannot encode a peer certificate");
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return common::Certificate::FromDer(bytes);
}

// SSL_CTX_set_cert_verify_callback: the peer's chain must be an X509-SVID of the endpoint
// SPIFFE ID under the configured authorities.
int VerifyEndpointSvid(X509_STORE_CTX* store, void* arg) {
  auto* check = static_cast<SpiffeCheck*>(arg);
  auto refuse = [&](std::string why) {
    check->error = std::move(why);
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  };
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (leaf == nullptr) return refuse("the endpoint presented no certificate");
  std::vector<common::Certificate> chain;
  absl::StatusOr<common::Certificate> first = ToCertificate(leaf);
  if (!first.ok()) return refuse(std::string(first.status().message()));
  chain.push_back(*std::move(first));
  STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(store);
  for (int i = 0; sent != nullptr && i < sk_X509_num(sent); ++i) {
    X509* c = sk_X509_value(sent, i);
    if (X509_cmp(c, leaf) == 0) continue;
    absl::StatusOr<common::Certificate> cert = ToCertificate(c);
    if (!cert.ok()) return refuse(std::string(cert.status().message()));
    chain.push_back(*std::move(cert));
  }
  const common::SpiffeId& want = *check->spec->endpoint_spiffe_id;
  absl::StatusOr<common::SpiffeId> got = common::VerifyX509Svid(
      chain, check->spec->endpoint_authorities, want.trust_domain(), check->now);
  if (!got.ok()) {
    return refuse("the endpoint's X509-SVID does not verify: " +
                  std::string(got.status().message()));
  }
  if (got->String() != want.String()) {
    return refuse("the endpoint presented " + got->String() + ", not " + want.String());
  }
  return 1;
}

std::string Describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "timed out connecting";
    case httplib::Error::Read:
      return "the connection failed while reading the answer";
    case httplib::Error::Write:
      return "the connection failed while sending the request";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed";
    case httplib::Error::SSLServerVerification:
      return "the server's certificate did not verify";
    default:
      return httplib::to_string(e);
  }
}

}  // namespace

absl::Status CheckFetchedBundle(const common::TrustDomain& trust_domain,
                                const common::Bundle& bundle) {
  if (bundle.x509_authorities().empty() && bundle.jwt_authorities().empty()) {
    return absl::InvalidArgumentError("the bundle of " + trust_domain.name() +
                                      " holds no authorities");
  }
  for (const common::Certificate& ca : bundle.x509_authorities()) {
    for (const std::string& uri : ca.UriSans()) {
      absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(uri);
      if (!id.ok()) continue;
      if (!(id->trust_domain() == trust_domain)) {
        return absl::InvalidArgumentError("the bundle fetched for " + trust_domain.name() +
                                          " holds an X.509 authority of trust domain " +
                                          id->trust_domain().name());
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<common::Bundle> FetchBundle(const common::TrustDomain& trust_domain,
                                           const BundleEndpointSpec& spec, absl::Time now,
                                           absl::Duration timeout) {
  TRELLIS_ASSIGN_OR_RETURN(common::HttpsUrl url,
                           common::ParseHttpsUrl(spec.url, "bundle endpoint URL"));
  const absl::Time start = absl::Now();
  httplib::SSLClient client(url.host, url.PortNumber());
  if (!client.is_valid()) return absl::InternalError("cannot create a TLS client");
  auto seconds = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  client.set_connection_timeout(seconds, 0);
  client.set_read_timeout(seconds, 0);
  client.set_write_timeout(seconds, 0);
  SSL_CTX* ctx = client.ssl_context();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SpiffeCheck check{&spec, now, ""};
  if (spec.profile == EndpointProfile::kHttpsSpiffe) {
    if (!spec.endpoint_spiffe_id) {
      return absl::InvalidArgumentError("https_spiffe needs an endpoint SPIFFE ID");
    }
    if (spec.endpoint_authorities.empty()) {
      return absl::FailedPreconditionError(
          "no X.509 authorities of " + spec.endpoint_spiffe_id->trust_domain().name() +
          " to verify the endpoint's SVID with: set that trust domain's bundle first");
    }
    // The SVID check below replaces the Web PKI and host name checks.
    client.enable_server_certificate_verification(false);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_cert_verify_callback(ctx, &VerifyEndpointSvid, &check);
  } else {
    client.enable_server_certificate_verification(true);
  }
  std::string body;
  bool too_large = false;
  // httplib's timeouts bound each connect and read; this bounds the whole fetch, so an
  // endpoint trickling bytes cannot hold the refresher (or a server's shutdown) for longer.
  // httplib's own stop() waits for the request it should interrupt, so the watchdog shuts
  // the socket down itself, through a duplicate descriptor: the socket cannot be closed and
  // its number reused under the watchdog while the duplicate is open.
  absl::Mutex watch_mu;
  bool fetched = false;
  bool timed_out = false;
  int watched_fd = -1;
  client.set_socket_options([&](int sock) {
    absl::MutexLock lock(&watch_mu);
    if (watched_fd >= 0) ::close(watched_fd);
    watched_fd = ::fcntl(sock, F_DUPFD_CLOEXEC, 0);
  });
  std::thread watchdog([&] {
    absl::MutexLock lock(&watch_mu);
    if (!watch_mu.AwaitWithTimeout(absl::Condition(&fetched), timeout)) {
      timed_out = true;
      if (watched_fd >= 0) ::shutdown(watched_fd, SHUT_RDWR);
    }
  });
  httplib::Result res = client.Get(url.path, [&](const char* data, size_t len) {
    if (body.size() + len > kMaxDocument) {
      too_large = true;
      return false;
    }
    body.append(data, len);
    return true;
  });
  {
    absl::MutexLock lock(&watch_mu);
    fetched = true;
  }
  watchdog.join();
  if (watched_fd >= 0) ::close(watched_fd);
  if (too_large) {
    return absl::UnavailableError(spec.url + " answered more than 1 MiB");
  }
  // httplib's own per-read timeout may end a trickling fetch just before the watchdog: past
  // the deadline, either way the answer did not come in time.
  if (!res && (timed_out || absl::Now() - start >= timeout)) {
    return absl::UnavailableError("cannot fetch the bundle of " + trust_domain.name() + " from " +
                                  spec.url + ": no complete answer within " +
                                  absl::FormatDuration(timeout));
  }
  if (!res) {
    std::string why = Describe(res.error());
    if (!check.error.empty()) {
      why = check.error;
    } else if (res.error() == httplib::Error::SSLServerVerification) {
      long result = client.get_openssl_verify_result();
      why += result == X509_V_OK ? std::string(": it does not name host ") + url.host
                                 : std::string(": ") + X509_verify_cert_error_string(result);
    }
    return absl::UnavailableError("cannot fetch the bundle of " + trust_domain.name() + " from " +
                                  spec.url + ": " + why);
  }
  if (res->status != 200) {
    return absl::UnavailableError(spec.url + " answered HTTP " + std::to_string(res->status));
  }
  absl::StatusOr<common::Bundle> bundle = common::ParseSpiffeBundle(trust_domain, body);
  if (!bundle.ok()) {
    return absl::InvalidArgumentError(spec.url + " did not serve a valid SPIFFE bundle: " +
                                      std::string(bundle.status().message()));
  }
  TRELLIS_RETURN_IF_ERROR(CheckFetchedBundle(trust_domain, *bundle));
  return bundle;
}

}  // namespace trellis::federation

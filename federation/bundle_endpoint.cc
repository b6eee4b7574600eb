// The bundle endpoint on cpp-httplib: GET / answers the document; each TLS handshake takes
// the identity files' current contents, so a rotated certificate is served at once.
#include "federation/bundle_endpoint.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>

#include "absl/time/clock.h"
#include "common/log.h"

namespace trellis::federation {

using common::LogInfo;
using common::LogWarn;
namespace {

constexpr int kThreads = 2;
constexpr time_t kIoTimeoutSeconds = 5;

// SSL_CTX_set_cert_cb: installs the current chain and key for this handshake.
int UseCurrentIdentity(SSL* ssl, void* arg) {
  auto* files = static_cast<TlsFiles*>(arg);
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id = files->Current();
  if (!id.ok()) {
    LogWarn("Bundle endpoint has no usable certificate",
            {{"error", std::string(id.status().message())}});
    return 0;
  }
  STACK_OF(X509)* chain = sk_X509_new_null();
  if (chain == nullptr) return 0;
  for (size_t i = 1; i < (*id)->chain.size(); ++i) {
    // Not owned by the stack: SSL_use_cert_and_key takes its own references.
    sk_X509_push(chain, (*id)->chain[i].x509());
  }
  int ok = SSL_use_cert_and_key(ssl, (*id)->chain.front().x509(), (*id)->key.pkey(), chain, 1);
  sk_X509_free(chain);
  return ok == 1 ? 1 : 0;
}

}  // namespace

BundleEndpoint::BundleEndpoint(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<BundleEndpoint>> BundleEndpoint::Start(Options options) {
  if (!options.identity || !options.document) {
    return absl::InvalidArgumentError("bundle endpoint needs a document and an identity");
  }
  // Read once now so a bad certificate stops the server from starting, not each handshake.
  if (auto id = options.identity->Current(); !id.ok()) {
    return absl::InvalidArgumentError("federation.bundle_endpoint: " +
                                      std::string(id.status().message()));
  }
  std::unique_ptr<BundleEndpoint> e(new BundleEndpoint(std::move(options)));
  TlsFiles* files = e->options_.identity.get();
  e->server_ = std::make_unique<httplib::SSLServer>([files](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(&ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_cert_cb(&ctx, &UseCurrentIdentity, files);
    return true;
  });
  if (!e->server_->is_valid())
    return absl::InternalError("cannot create the bundle endpoint's TLS context");
  e->server_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  e->server_->set_read_timeout(kIoTimeoutSeconds, 0);
  e->server_->set_write_timeout(kIoTimeoutSeconds, 0);
  e->server_->set_keep_alive_max_count(10);
  // The accept loop re-checks for stop() this often instead of blocking in accept(), which
  // a stop() racing the loop's read of the listening socket could otherwise leave waiting.
  e->server_->set_idle_interval(0, 200000);
  e->server_->set_payload_max_length(64 * 1024);
  auto document = e->options_.document;
  e->server_->Get("/", [document](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<std::string> doc = document();
    if (!doc.ok()) {
      res.status = 503;
      res.set_content("{\"error\":\"bundle not available\"}", "application/json");
      return;
    }
    res.set_content(*std::move(doc), "application/json");
  });
  e->server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && req.method != "GET" && req.method != "HEAD") res.status = 405;
    res.set_content(
        res.status == 405 ? "{\"error\":\"method not allowed\"}" : "{\"error\":\"not found\"}",
        "application/json");
  });
  const Options& o = e->options_;
  if (o.port == 0) {
    e->port_ = e->server_->bind_to_any_port(o.address);
    if (e->port_ <= 0) {
      return absl::UnavailableError("federation.bundle_endpoint: cannot listen on " + o.address);
    }
  } else {
    if (!e->server_->bind_to_port(o.address, o.port)) {
      return absl::UnavailableError("federation.bundle_endpoint: cannot listen on " + o.address +
                                    ":" + std::to_string(o.port));
    }
    e->port_ = o.port;
  }
  httplib::SSLServer* server = e->server_.get();
  auto listening = std::make_shared<std::atomic<bool>>(false);
  e->thread_ = std::thread([server, listening] {
    server->listen_after_bind();
    *listening = true;  // returned: stopped, or failed to start
  });
  // stop() is a no-op until the accept loop runs, so an early Stop() would leave it running:
  // return only once it has started (or given up).
  while (!server->is_running() && !*listening) absl::SleepFor(absl::Milliseconds(1));
  if (!server->is_running()) {
    return absl::UnavailableError("federation.bundle_endpoint: the listener did not start");
  }
  LogInfo("Serving the bundle endpoint", {{"address", o.address + ":" + std::to_string(e->port_)}});
  return e;
}

BundleEndpoint::~BundleEndpoint() { Stop(); }

void BundleEndpoint::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace trellis::federation

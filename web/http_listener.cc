// HTTP(S) listeners on cpp-httplib.
#include "web/http_listener.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>

#include "absl/time/clock.h"
#include "common/log.h"

namespace trellis::web {
namespace {

using common::LogInfo;
using common::LogWarn;

constexpr int kThreads = 2;
constexpr time_t kIoTimeoutSeconds = 5;

// SSL_CTX_set_cert_cb: installs the files' current chain and key for this handshake.
int UseCurrentIdentity(SSL* ssl, void* arg) {
  auto* files = static_cast<TlsFiles*>(arg);
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> id = files->Current();
  if (!id.ok()) {
    LogWarn("No usable TLS certificate for a handshake",
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

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(Options o) {
  std::unique_ptr<HttpListener> l(new HttpListener());
  l->tls_ = o.tls;
  if (l->tls_) {
    // Read once now so a bad certificate stops the start, not each handshake.
    if (auto id = l->tls_->Current(); !id.ok()) {
      return absl::InvalidArgumentError(o.name + ": " + std::string(id.status().message()));
    }
    TlsFiles* files = l->tls_.get();
    auto server = std::make_unique<httplib::SSLServer>([files](SSL_CTX& ctx) {
      SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
      SSL_CTX_set_options(&ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_session_cache_mode(&ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_cert_cb(&ctx, &UseCurrentIdentity, files);
      return true;
    });
    if (!server->is_valid()) return absl::InternalError(o.name + ": cannot create a TLS context");
    l->server_ = std::move(server);
  } else {
    l->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *l->server_;
  s.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  s.set_read_timeout(kIoTimeoutSeconds, 0);
  s.set_write_timeout(kIoTimeoutSeconds, 0);
  s.set_keep_alive_max_count(10);
  s.set_payload_max_length(64 * 1024);
  // The accept loop re-checks for stop() this often instead of blocking in accept(), which a
  // stop() racing the loop's read of the listening socket could otherwise leave waiting.
  s.set_idle_interval(0, 200000);
  if (o.routes) o.routes(s);
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route answered with its own error
    if (res.status == 404 && req.method != "GET" && req.method != "HEAD") res.status = 405;
    res.set_content(res.status == 405   ? "{\"error\":\"method not allowed\"}"
                    : res.status == 404 ? "{\"error\":\"not found\"}"
                                        : "{\"error\":\"bad request\"}",
                    "application/json");
  });
  if (o.port == 0) {
    l->port_ = s.bind_to_any_port(o.address);
    if (l->port_ <= 0) return absl::UnavailableError(o.name + ": cannot listen on " + o.address);
  } else {
    if (!s.bind_to_port(o.address, o.port)) {
      return absl::UnavailableError(o.name + ": cannot listen on " + o.address + ":" +
                                    std::to_string(o.port));
    }
    l->port_ = o.port;
  }
  auto returned = std::make_shared<std::atomic<bool>>(false);
  httplib::Server* server = l->server_.get();
  l->thread_ = std::thread([server, returned] {
    server->listen_after_bind();
    *returned = true;  // stopped, or failed to start
  });
  // stop() is a no-op until the accept loop runs, so an early Stop() would leave it running:
  // return only once it has started (or given up).
  while (!server->is_running() && !*returned) absl::SleepFor(absl::Milliseconds(1));
  if (!server->is_running()) return absl::UnavailableError(o.name + ": the listener did not start");
  LogInfo("Listening", {{"listener", o.name},
                        {"address", o.address + ":" + std::to_string(l->port_)},
                        {"tls", l->tls_ ? "yes" : "no"}});
  return l;
}

HttpListener::~HttpListener() { Stop(); }

void HttpListener::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace trellis::web

// A deliberately small HTTPS/1.0 client: the bootstrap bundle is one document fetched once.
#include "agent/bundle_url.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace trellis::agent {
namespace {

constexpr size_t kMaxBody = 1 << 20;

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return e == 0 ? "unknown TLS error" : buf;
}

}  // namespace

absl::StatusOr<std::string> HttpsGet(const std::string& url) {
  auto parsed = ParseHttpsUrl(url, "trust_bundle_url");
  if (!parsed.ok()) return parsed.status();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return absl::InternalError("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return absl::InternalError("cannot load the system trust store");
  }
  std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(BIO_new_ssl_connect(ctx.get()), BIO_free_all);
  if (!bio) return absl::InternalError("cannot create a TLS connection");
  SSL* ssl = nullptr;
  BIO_get_ssl(bio.get(), &ssl);
  SSL_set_mode(ssl, SSL_MODE_AUTO_RETRY);
  SSL_set_tlsext_host_name(ssl, parsed->host.c_str());
  SSL_set1_host(ssl, parsed->host.c_str());
  std::string target = parsed->host + ":" + parsed->port;
  BIO_set_conn_hostname(bio.get(), target.c_str());
  if (BIO_do_connect(bio.get()) <= 0 || BIO_do_handshake(bio.get()) <= 0) {
    return absl::UnavailableError("cannot connect to " + url + ": " + OpenSslError());
  }
  std::string request =
      absl::StrCat("GET ", parsed->path, " HTTP/1.0\r\nHost: ", parsed->host,
                   "\r\nAccept: application/json, */*\r\nConnection: close\r\n\r\n");
  if (BIO_write(bio.get(), request.data(), static_cast<int>(request.size())) <= 0) {
    return absl::UnavailableError("cannot send the request to " + url);
  }
  std::string response;
  char buf[8192];
  while (true) {
    int n = BIO_read(bio.get(), buf, sizeof(buf));
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
    if (response.size() > kMaxBody + 16384) {
      return absl::UnavailableError("answer from " + url + " is larger than 1 MiB");
    }
  }
  size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos)
    return absl::UnavailableError("malformed answer from " + url);
  std::string status_line = response.substr(0, response.find("\r\n"));
  // "HTTP/1.x 200 OK"
  size_t sp = status_line.find(' ');
  if (sp == std::string::npos || status_line.compare(sp + 1, 3, "200") != 0) {
    return absl::UnavailableError(url + " answered \"" + status_line + "\"");
  }
  return response.substr(header_end + 4);
}

}  // namespace trellis::agent

// The bundle endpoint: GET / answers the document.
#include "federation/bundle_endpoint.h"

#include <httplib.h>

namespace trellis::federation {

absl::StatusOr<std::unique_ptr<BundleEndpoint>> BundleEndpoint::Start(Options options) {
  if (!options.identity || !options.document) {
    return absl::InvalidArgumentError("bundle endpoint needs a document and an identity");
  }
  web::HttpListener::Options o;
  o.name = "federation.bundle_endpoint";
  o.address = options.address;
  o.port = options.port;
  o.tls = options.identity;
  o.routes = [document = options.document](httplib::Server& s) {
    s.Get("/", [document](const httplib::Request&, httplib::Response& res) {
      absl::StatusOr<std::string> doc = document();
      if (!doc.ok()) {
        res.status = 503;
        res.set_content("{\"error\":\"bundle not available\"}", "application/json");
        return;
      }
      res.set_content(*std::move(doc), "application/json");
    });
  };
  absl::StatusOr<std::unique_ptr<web::HttpListener>> listener =
      web::HttpListener::Start(std::move(o));
  if (!listener.ok()) return listener.status();
  return std::unique_ptr<BundleEndpoint>(new BundleEndpoint(*std::move(listener)));
}

}  // namespace trellis::federation

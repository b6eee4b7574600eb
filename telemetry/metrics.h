// Prometheus telemetry: serves /metrics when `telemetry { Prometheus {} }` is configured and
// instruments gRPC servers; without it every metric still works but nothing is served.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config/shared_config.h"

namespace grpc {
class ServerBuilder;
}

namespace trellis::telemetry {

// A monotonically increasing count. Cheap to copy; valid while its Metrics lives. A
// default-constructed Counter does nothing, so code can hold one before metrics exist.
class Counter {
 public:
  Counter() = default;
  void Increment(double by = 1);

 private:
  friend class Metrics;
  explicit Counter(void* impl) : impl_(impl) {}
  void* impl_ = nullptr;  // a prometheus::Counter
};

// A distribution of observed values (latencies in seconds). Cheap to copy; valid while its
// Metrics lives. A default-constructed Histogram does nothing.
class Histogram {
 public:
  Histogram() = default;
  void Observe(double value);

 private:
  friend class Metrics;
  explicit Histogram(void* impl) : impl_(impl) {}
  void* impl_ = nullptr;  // a prometheus::Histogram
};

class Metrics {
 public:
  using Labels = std::map<std::string, std::string>;

  // Buckets for calls expected to take milliseconds: 0.5 ms to 10 s (slower lands in +Inf).
  static const std::vector<double>& LatencyBuckets();

  // Starts an HTTP exposer on Prometheus host:port (port 0 picks a free port) serving
  // /metrics; without a Prometheus block, metrics are only kept in memory. The per-RPC
  // metrics are named `<prefix>_rpc_...` (the processes use "trellis_server", "trellis_agent").
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(
      const common::config::TelemetryConfig& config, const std::string& prefix = "trellis");
  ~Metrics();

  // The port /metrics is served on; 0 when nothing listens.
  int port() const;

  // Adds the per-RPC interceptor to a gRPC server about to be built. The Metrics must
  // outlive the built server.
  void Instrument(grpc::ServerBuilder& builder);

  // A counter `name{labels}`; the same name must always be used with the same label keys.
  Counter AddCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  // A histogram `name{labels}` with the given bucket upper bounds; the same name must always
  // be used with the same label keys and buckets.
  Histogram AddHistogram(const std::string& name, const std::string& help,
                         const Labels& labels = {},
                         const std::vector<double>& buckets = LatencyBuckets());
  // A gauge read by calling `value` at every scrape (from the exposer's thread). The
  // callback must stay callable until ClearCallbacks() or the Metrics is destroyed.
  void AddGaugeCallback(const std::string& name, const std::string& help,
                        std::function<double()> value);
  // The same for one labelled series of `name`; a nullopt value leaves the series out of
  // that scrape (e.g. an authority that does not exist right now).
  void AddGaugeCallback(const std::string& name, const std::string& help, const Labels& labels,
                        std::function<std::optional<double>()> value);
  // A counter read at every scrape from a running total its owner keeps (which must never
  // decrease); same lifetime rule as gauge callbacks.
  void AddCounterCallback(const std::string& name, const std::string& help, const Labels& labels,
                          std::function<double()> value);
  // Drops every gauge callback: call before what they read goes away.
  void ClearCallbacks();

  struct Impl;

 private:
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trellis::telemetry

// Prometheus telemetry: registry, exposer, gRPC server interceptor and scrape-time gauges.
#include "telemetry/metrics.h"

#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace trellis::telemetry {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Unary calls are expected to take milliseconds; anything past 10s lands in +Inf.
const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
// Streams (WatchChanges, FetchX509SVID) live as long as their peer: seconds to days.
const prometheus::Histogram::BucketBoundaries kStreamBuckets = {0.1, 1,    10,       60,       300,
                                                                900, 3600, 4 * 3600, 24 * 3600};

// The canonical gRPC code names ("PERMISSION_DENIED"): gRPC and absl codes share their values.
std::string CodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

// Gauges and counters whose value is read from their owner at scrape time, so they can never
// go stale. Series of one name are exported as one family, in the order they were added.
class CallbackMetrics : public prometheus::Collectable {
 public:
  struct Series {
    std::string name;
    std::string help;
    prometheus::MetricType type;
    std::map<std::string, std::string> labels;
    std::function<std::optional<double>()> value;
  };
  void Add(Series series) {
    absl::MutexLock lock(&mu_);
    series_.push_back(std::move(series));
  }
  void Clear() {
    // Collect() holds mu_ while calling back, so no callback runs once this returns.
    absl::MutexLock lock(&mu_);
    series_.clear();
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    std::vector<prometheus::MetricFamily> out;
    std::map<std::string, size_t> index;  // family name -> position in `out`
    for (const auto& s : series_) {
      auto [it, added] = index.emplace(s.name, out.size());
      if (added) {
        prometheus::MetricFamily family;
        family.name = s.name;
        family.help = s.help;
        family.type = s.type;
        out.push_back(std::move(family));
      }
      std::optional<double> value = s.value();
      if (!value) continue;
      prometheus::ClientMetric metric;
      for (const auto& [k, v] : s.labels) metric.label.push_back({k, v});
      if (s.type == prometheus::MetricType::Counter) {
        metric.counter.value = *value;
      } else {
        metric.gauge.value = *value;
      }
      out[it->second].metric.push_back(std::move(metric));
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Series> series_ ABSL_GUARDED_BY(mu_);
};

// Resolves `host` to a numeric address civetweb can bind ("[v6]:port" for IPv6).
absl::StatusOr<std::string> ListenAddress(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::InvalidArgumentError("telemetry: cannot resolve Prometheus host \"" + host +
                                      "\": " + gai_strerror(rc));
  }
  char buf[NI_MAXHOST];
  int family = res->ai_family;
  rc = getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  if (rc != 0) {
    return absl::InvalidArgumentError("telemetry: cannot resolve Prometheus host \"" + host +
                                      "\": " + gai_strerror(rc));
  }
  std::string addr = buf;
  if (family == AF_INET6) addr = "[" + addr + "]";
  return addr + ":" + std::to_string(port);
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<CallbackMetrics> callbacks = std::make_shared<CallbackMetrics>();
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;

  prometheus::Family<prometheus::Counter>* rpc_requests = nullptr;
  prometheus::Family<prometheus::Histogram>* rpc_duration = nullptr;
  prometheus::Family<prometheus::Histogram>* stream_duration = nullptr;
  prometheus::Family<prometheus::Gauge>* open_streams = nullptr;

  absl::Mutex families_mu;
  // By name.
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counters
      ABSL_GUARDED_BY(families_mu);
  std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms
      ABSL_GUARDED_BY(families_mu);

  // The open-streams gauge of one streaming method, raised while a call of it is open.
  prometheus::Gauge* OpenStreams(const std::string& service, const std::string& method) {
    return &open_streams->Add({{"service", service}, {"method", method}});
  }

  void RecordRpc(const std::string& service, const std::string& method, bool stream,
                 grpc::StatusCode code, double seconds) {
    prometheus::Labels labels{{"service", service}, {"method", method}, {"code", CodeName(code)}};
    rpc_requests->Add(labels).Increment();
    if (stream) {
      stream_duration->Add(labels, kStreamBuckets).Observe(seconds);
    } else {
      rpc_duration->Add(labels, kRpcBuckets).Observe(seconds);
    }
  }
};

namespace {

// One per server-side call: counts the call and times it from arrival to its status.
class RpcInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(Metrics::Impl* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {
    // "/package.Service/Method"; anything else is recorded whole as the method.
    std::string full = info->method() ? info->method() : "";
    size_t slash = full.rfind('/');
    if (!full.empty() && full[0] == '/' && slash != std::string::npos && slash > 0) {
      service_ = full.substr(1, slash - 1);
      method_ = full.substr(slash + 1);
    } else {
      method_ = full;
    }
    stream_ = info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY;
    if (stream_) {
      open_ = metrics_->OpenStreams(service_, method_);
      open_->Increment();
    }
  }

  ~RpcInterceptor() override {
    // A call torn down without sending a status was cancelled (peer gone, server stopping).
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!recorded_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    if (open_ != nullptr) open_->Decrement();
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_->RecordRpc(service_, method_, stream_, code, elapsed.count());
  }

  Metrics::Impl* metrics_;
  std::chrono::steady_clock::time_point start_;
  std::string service_;
  std::string method_;
  bool stream_ = false;
  bool recorded_ = false;
  prometheus::Gauge* open_ = nullptr;  // streams only
};

class RpcInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(Metrics::Impl* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, info);
  }

 private:
  Metrics::Impl* metrics_;
};

}  // namespace

void Counter::Increment(double by) {
  if (impl_ != nullptr) static_cast<prometheus::Counter*>(impl_)->Increment(by);
}

void Histogram::Observe(double value) {
  if (impl_ != nullptr) static_cast<prometheus::Histogram*>(impl_)->Observe(value);
}

const std::vector<double>& Metrics::LatencyBuckets() {
  static const std::vector<double>* const buckets = new std::vector<double>(kRpcBuckets);
  return *buckets;
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(
    const common::config::TelemetryConfig& config, const std::string& prefix) {
  auto impl = std::make_unique<Impl>();
  impl->rpc_requests = &prometheus::BuildCounter()
                            .Name(prefix + "_rpc_requests_total")
                            .Help("gRPC calls handled, by method and status code")
                            .Register(*impl->registry);
  impl->rpc_duration = &prometheus::BuildHistogram()
                            .Name(prefix + "_rpc_duration_seconds")
                            .Help("Unary gRPC call latency, arrival to status, in seconds")
                            .Register(*impl->registry);
  impl->stream_duration = &prometheus::BuildHistogram()
                               .Name(prefix + "_rpc_stream_duration_seconds")
                               .Help("Streaming gRPC call lifetime in seconds")
                               .Register(*impl->registry);
  impl->open_streams = &prometheus::BuildGauge()
                            .Name(prefix + "_rpc_open_streams")
                            .Help("Streaming gRPC calls open right now, by method")
                            .Register(*impl->registry);
  if (config.prometheus) {
    const auto& prom = *config.prometheus;
    std::string where = prom.host + ":" + std::to_string(prom.port);
    TRELLIS_ASSIGN_OR_RETURN(std::string address, ListenAddress(prom.host, prom.port));
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(address, 2);
    } catch (const std::exception& e) {
      return absl::UnavailableError("telemetry: cannot serve Prometheus metrics on " + where +
                                    ": " + e.what());
    }
    std::vector<int> ports = impl->exposer->GetListeningPorts();
    if (ports.empty()) {
      return absl::UnavailableError("telemetry: cannot serve Prometheus metrics on " + where);
    }
    impl->port = ports.front();
    impl->exposer->RegisterCollectable(impl->registry);
    impl->exposer->RegisterCollectable(impl->callbacks);
  }
  return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Metrics::~Metrics() {
  // Stop serving first: scrapes read the registry and the callbacks.
  impl_->exposer.reset();
}

int Metrics::port() const { return impl_->port; }

void Metrics::Instrument(grpc::ServerBuilder& builder) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<RpcInterceptorFactory>(impl_.get()));
  builder.experimental().SetInterceptorCreators(std::move(creators));
}

Counter Metrics::AddCounter(const std::string& name, const std::string& help,
                            const Labels& labels) {
  absl::MutexLock lock(&impl_->families_mu);
  auto& family = impl_->counters[name];
  if (family == nullptr) {
    family = &prometheus::BuildCounter().Name(name).Help(help).Register(*impl_->registry);
  }
  return Counter(&family->Add(prometheus::Labels(labels.begin(), labels.end())));
}

Histogram Metrics::AddHistogram(const std::string& name, const std::string& help,
                                const Labels& labels, const std::vector<double>& buckets) {
  absl::MutexLock lock(&impl_->families_mu);
  auto& family = impl_->histograms[name];
  if (family == nullptr) {
    family = &prometheus::BuildHistogram().Name(name).Help(help).Register(*impl_->registry);
  }
  return Histogram(&family->Add(prometheus::Labels(labels.begin(), labels.end()),
                                prometheus::Histogram::BucketBoundaries(buckets)));
}

void Metrics::AddGaugeCallback(const std::string& name, const std::string& help,
                               std::function<double()> value) {
  impl_->callbacks->Add(
      {name,
       help,
       prometheus::MetricType::Gauge,
       {},
       [value = std::move(value)]() -> std::optional<double> { return value(); }});
}

void Metrics::AddGaugeCallback(const std::string& name, const std::string& help,
                               const Labels& labels, std::function<std::optional<double>()> value) {
  impl_->callbacks->Add({name, help, prometheus::MetricType::Gauge, labels, std::move(value)});
}

void Metrics::AddCounterCallback(const std::string& name, const std::string& help,
                                 const Labels& labels, std::function<double()> value) {
  impl_->callbacks->Add(
      {name, help, prometheus::MetricType::Counter, labels,
       [value = std::move(value)]() -> std::optional<double> { return value(); }});
}

void Metrics::ClearCallbacks() { impl_->callbacks->Clear(); }

}  // namespace trellis::telemetry

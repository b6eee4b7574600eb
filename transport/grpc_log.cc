// Routes gpr_log lines into common/log.
#include "transport/grpc_log.h"

#include <grpc/support/log.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace trellis::transport {
namespace {

using common::config::LogLevel;

// Benign on a SPIFFE mTLS server; see the header.
constexpr const char* kBenignPrefixes[] = {"No match found for server name"};

void WriteGrpcLine(gpr_log_func_args* args) {
  const std::string msg = args->message != nullptr ? args->message : "";
  LogLevel level = LogLevel::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    level = LogLevel::kError;
  } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
    level = LogLevel::kInfo;
  }
  for (const char* prefix : kBenignPrefixes) {
    if (absl::StartsWith(msg, prefix)) level = LogLevel::kDebug;
  }
  if (!common::LogEnabled(level)) return;
  std::string file = args->file != nullptr ? args->file : "";
  if (size_t slash = file.rfind('/'); slash != std::string::npos) file = file.substr(slash + 1);
  common::Log(level, msg, {{"component", "grpc"}, {"source", absl::StrCat(file, ":", args->line)}});
}

}  // namespace

void RouteGrpcLogs() { gpr_set_log_function(&WriteGrpcLine); }

}  // namespace trellis::transport

// libFuzzer target: arbitrary bytes through env expansion, the HCL and JSON parsers and the
// typed server/agent loaders. Any crash, sanitizer report, or non-INVALID_ARGUMENT error from
// pure text is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "common/config/agent_config.h"
#include "common/config/parser.h"
#include "common/config/server_config.h"
#include "common/duration.h"

namespace {

using namespace trellis::common::config;

// A fixed, deterministic environment so runs reproduce: short values, a multi-line value,
// and one big value that drives expansion into the size limit.
std::optional<std::string> FakeEnv(const std::string& name) {
  if (name.empty()) return std::nullopt;
  switch (name[0]) {
    case 'A':
      return std::string("example.org");
    case 'B':
      return std::string("8081");
    case 'N':
      return std::string("\"\n}\n{");
    case 'Z':
      return std::string(64 * 1024, 'z');
    default:
      return std::nullopt;
  }
}

void Check(const absl::Status& status) {
  // Text alone can only be invalid; anything else means a wrong code path was taken.
  if (!status.ok() && status.code() != absl::StatusCode::kInvalidArgument) std::abort();
  if (!status.ok() && status.message().empty()) std::abort();
}

void Exercise(const Document& doc) {
  absl::StatusOr<ServerConfig> server = ServerConfigFromDocument(doc);
  Check(server.status());
  if (server.ok()) {
    (void)trellis::common::DurationToString(server->EffectiveAgentTtl());
    (void)KeyTypeName(server->ca_key_type);
    (void)LogLevelName(server->log_level);
  }
  absl::StatusOr<AgentConfig> agent = AgentConfigFromDocument(doc);
  Check(agent.status());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const char* name : {"f.conf", "f.json"}) {
    for (bool expand : {false, true}) {
      ParseOptions options;
      options.expand_env = expand;
      options.env = FakeEnv;
      absl::StatusOr<Document> doc = ParseDocument(text, name, options);
      Check(doc.status());
      if (doc.ok()) Exercise(*doc);
    }
  }
  return 0;
}

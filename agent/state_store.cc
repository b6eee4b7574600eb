// Reading and writing the agent's persisted identity.
#include "agent/state_store.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/status.h"

namespace trellis::agent {
namespace {

std::string PathIn(const std::string& dir, const char* name) { return dir + "/" + name; }

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::Status SaveBundle(const std::string& data_dir, const common::Bundle& bundle) {
  TRELLIS_RETURN_IF_ERROR(common::EnsurePrivateDir(data_dir));
  TRELLIS_ASSIGN_OR_RETURN(std::string json, common::SpiffeBundleToJson(bundle));
  return common::WriteFileAtomic(PathIn(data_dir, "bundle.json"), json, 0600);
}

absl::Status SaveAgentState(const std::string& data_dir, const AgentState& state) {
  if (state.chain.empty()) return absl::InvalidArgumentError("agent SVID chain is empty");
  TRELLIS_RETURN_IF_ERROR(common::CheckKeyMatchesCertificate(state.key, state.chain.front()));
  TRELLIS_RETURN_IF_ERROR(common::EnsurePrivateDir(data_dir));
  TRELLIS_RETURN_IF_ERROR(SaveBundle(data_dir, state.bundle));
  nlohmann::json meta = {{"reattestable", state.reattestable}};
  TRELLIS_RETURN_IF_ERROR(
      common::WriteFileAtomic(PathIn(data_dir, "agent_state.json"), meta.dump(), 0600));
  // Key and certificate are renamed into place one after the other; Load checks they match,
  // and the key goes first so a crash between the two leaves a detectable mismatch, never a
  // silently wrong pair.
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, state.key.ToPem());
  TRELLIS_RETURN_IF_ERROR(
      common::WritePrivateFile(PathIn(data_dir, "agent_svid.key"), key_pem.view()));
  return common::WriteFileAtomic(PathIn(data_dir, "agent_svid.pem"),
                                 common::Certificate::ChainToPem(state.chain), 0600);
}

absl::StatusOr<std::optional<AgentState>> LoadAgentState(const std::string& data_dir,
                                                         const common::TrustDomain& td) {
  const std::string cert_path = PathIn(data_dir, "agent_svid.pem");
  const std::string key_path = PathIn(data_dir, "agent_svid.key");
  const std::string bundle_path = PathIn(data_dir, "bundle.json");
  if (!Exists(cert_path) || !Exists(key_path) || !Exists(bundle_path)) return std::nullopt;
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem, common::ReadFile(cert_path));
  auto chain = common::Certificate::ChainFromPem(cert_pem);
  if (!chain.ok()) return Annotate(chain.status(), cert_path);
  TRELLIS_ASSIGN_OR_RETURN(std::string key_pem, common::ReadFile(key_path));
  auto key = common::PrivateKey::FromPem(key_pem);
  if (!key.ok()) return Annotate(key.status(), key_path);
  if (absl::Status s = common::CheckKeyMatchesCertificate(*key, chain->front()); !s.ok()) {
    return Annotate(s, key_path + " does not match " + cert_path);
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string bundle_json, common::ReadFile(bundle_path));
  auto bundle = common::ParseSpiffeBundle(td, bundle_json);
  if (!bundle.ok()) return Annotate(bundle.status(), bundle_path);
  bool reattestable = false;
  if (auto meta_text = common::ReadFile(PathIn(data_dir, "agent_state.json")); meta_text.ok()) {
    nlohmann::json meta = nlohmann::json::parse(*meta_text, nullptr, false);
    if (meta.is_object() && meta.contains("reattestable") && meta["reattestable"].is_boolean()) {
      reattestable = meta["reattestable"].get<bool>();
    }
  }
  return std::optional<AgentState>(
      AgentState{std::move(*chain), std::move(*key), std::move(*bundle), reattestable});
}

}  // namespace trellis::agent

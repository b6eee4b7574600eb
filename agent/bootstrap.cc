// The bootstrap order: persisted state first, then the one configured source of trust.
#include "agent/bootstrap.h"

#include "agent/bundle_url.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status.h"

namespace trellis::agent {
namespace {

// The bundle in `text`, from `what` ("trust_bundle_path <file>"), with an X.509 authority.
absl::StatusOr<std::shared_ptr<const common::Bundle>> ParseBootstrapBundle(
    const common::config::AgentConfig& config, const std::string& text, const std::string& what) {
  absl::StatusOr<common::Bundle> bundle =
      config.trust_bundle_format == common::config::TrustBundleFormat::kSpiffe
          ? common::ParseSpiffeBundle(config.trust_domain, text)
          : common::BundleFromPem(config.trust_domain, text);
  if (!bundle.ok()) return Annotate(bundle.status(), what);
  if (bundle->x509_authorities().empty()) {
    return absl::InvalidArgumentError(what + " holds no X.509 authority");
  }
  return std::make_shared<const common::Bundle>(*std::move(bundle));
}

}  // namespace

absl::StatusOr<BootstrapTrust> LoadBootstrap(const common::config::AgentConfig& config,
                                             const common::Clock& clock) {
  BootstrapTrust trust;
  auto persisted = LoadAgentState(config.data_dir, config.trust_domain);
  if (!persisted.ok()) {
    common::LogWarn("ignoring unusable persisted agent state: " +
                    std::string(persisted.status().message()));
  } else if (persisted->has_value()) {
    AgentState& state = **persisted;
    trust.bundle = std::make_shared<const common::Bundle>(state.bundle);
    trust.reattestable = state.reattestable;
    if (clock.Now() < state.chain.front().not_after()) {
      trust.persisted = std::move(state);
      common::LogInfo("loaded the persisted agent SVID from " + config.data_dir);
    } else {
      common::LogInfo("the persisted agent SVID has expired; attesting again");
    }
    return trust;
  }
  if (!config.trust_bundle_path.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string text, common::ReadFile(config.trust_bundle_path));
    TRELLIS_ASSIGN_OR_RETURN(
        trust.bundle,
        ParseBootstrapBundle(config, text, "trust_bundle_path " + config.trust_bundle_path));
    return trust;
  }
  if (config.insecure_bootstrap) {
    trust.insecure = true;
    return trust;
  }
  if (!config.trust_bundle_url.empty()) {
    auto text = HttpsGet(config.trust_bundle_url);
    if (!text.ok()) return Annotate(text.status(), "trust_bundle_url");
    TRELLIS_ASSIGN_OR_RETURN(
        trust.bundle,
        ParseBootstrapBundle(config, *text, "trust_bundle_url " + config.trust_bundle_url));
    return trust;
  }
  return absl::InvalidArgumentError(
      "no bootstrap trust: set trust_bundle_path or insecure_bootstrap = true");
}

}  // namespace trellis::agent

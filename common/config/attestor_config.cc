// Reads the plugin_data of the platform attestors; every read marks its key, so a misspelt key
// is reported by the caller's Finish().
#include "common/config/attestor_config.h"

#include "absl/strings/match.h"
#include "common/config/section.h"
#include "common/config/shared_config.h"

namespace trellis::common::config {
namespace {

// Endpoints are read as URLs with a scheme, so "169.254.169.254" without one is caught here
// rather than as a connection error on the first attestation.
absl::Status ReadUrl(Section& data, std::string_view key, bool allow_http, std::string* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString(key, out));
  if (data.Get(key) == nullptr) return absl::OkStatus();
  if (absl::StartsWith(*out, "https://") || (allow_http && absl::StartsWith(*out, "http://"))) {
    return absl::OkStatus();
  }
  return data.WrongValue(key, *data.Get(key),
                         allow_http ? "an http:// or https:// URL" : "an https:// URL");
}

// A list that must hold no empty item.
absl::Status ReadNonEmptyItems(Section& data, std::string_view key, std::vector<std::string>* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadStringList(key, /*allow_single=*/false, out));
  for (const std::string& item : *out) {
    if (item.empty()) {
      return data.ErrorAt(data.PositionOf(key), data.KeyPath(key) + ": items must not be empty");
    }
  }
  return absl::OkStatus();
}

absl::Status RequireNonEmptyList(Section& data, std::string_view key,
                                 const std::vector<std::string>& list) {
  if (!list.empty()) return absl::OkStatus();
  if (data.Get(key) == nullptr) return data.Missing(key);
  return data.ErrorAt(data.PositionOf(key), data.KeyPath(key) + ": must list at least one item");
}

}  // namespace

absl::Status ReadK8sPsatServerConfig(Section& data, K8sPsatServerAttestorConfig* out) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> blocks, ReadLabelledBlocks(data, "clusters"));
  if (blocks.empty()) {
    return data.ErrorAt(data.value().pos,
                        data.KeyPath("clusters") + ": at least one cluster is required");
  }
  for (const LabelledBlock& block : blocks) {
    if (block.label.empty() || block.label.find('/') != std::string::npos) {
      return data.ErrorAt(block.pos, block.path +
                                         ": a cluster name must be non-empty and hold "
                                         "no '/' (it is part of agent IDs)");
    }
    TRELLIS_ASSIGN_OR_RETURN(Section c, Section::Open(data.doc(), *block.body, block.path));
    K8sPsatClusterConfig cluster;
    TRELLIS_RETURN_IF_ERROR(
        ReadNonEmptyItems(c, "service_account_allow_list", &cluster.service_account_allow_list));
    TRELLIS_RETURN_IF_ERROR(
        RequireNonEmptyList(c, "service_account_allow_list", cluster.service_account_allow_list));
    for (const std::string& sa : cluster.service_account_allow_list) {
      size_t colon = sa.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == sa.size() ||
          sa.find(':', colon + 1) != std::string::npos) {
        return c.ErrorAt(c.PositionOf("service_account_allow_list"),
                         c.KeyPath("service_account_allow_list") + ": " + QuoteForError(sa) +
                             " is not \"<namespace>:<service account>\"");
      }
    }
    std::vector<std::string> audience;
    TRELLIS_RETURN_IF_ERROR(ReadNonEmptyItems(c, "audience", &audience));
    if (c.Get("audience") != nullptr) {
      TRELLIS_RETURN_IF_ERROR(RequireNonEmptyList(c, "audience", audience));
      cluster.audience = std::move(audience);
    }
    TRELLIS_RETURN_IF_ERROR(c.ReadNonEmptyString("kube_config_file", &cluster.kube_config_file));
    TRELLIS_RETURN_IF_ERROR(
        ReadNonEmptyItems(c, "allowed_node_label_keys", &cluster.allowed_node_label_keys));
    TRELLIS_RETURN_IF_ERROR(
        ReadNonEmptyItems(c, "allowed_pod_label_keys", &cluster.allowed_pod_label_keys));
    TRELLIS_RETURN_IF_ERROR(c.Finish());
    out->clusters.emplace(block.label, std::move(cluster));
  }
  return absl::OkStatus();
}

absl::Status ReadAwsIidServerConfig(Section& data, AwsIidServerAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("access_key_id", &out->access_key_id));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("secret_access_key", &out->secret_access_key));
  if (out->access_key_id.empty() != out->secret_access_key.empty()) {
    return data.ErrorAt(data.value().pos,
                        data.path() + ": set access_key_id and secret_access_key together");
  }
  TRELLIS_RETURN_IF_ERROR(ReadNonEmptyItems(data, "account_ids", &out->account_ids));
  for (const std::string& account : out->account_ids) {
    if (account.size() != 12 || account.find_first_not_of("0123456789") != std::string::npos) {
      return data.ErrorAt(data.PositionOf("account_ids"), data.KeyPath("account_ids") + ": " +
                                                              QuoteForError(account) +
                                                              " is not a 12-digit AWS account ID");
    }
  }
  TRELLIS_RETURN_IF_ERROR(data.ReadDuration("max_document_age", &out->max_document_age));
  TRELLIS_RETURN_IF_ERROR(ReadNonEmptyItems(data, "aws_ca_cert_paths", &out->aws_ca_cert_paths));
  TRELLIS_RETURN_IF_ERROR(ReadUrl(data, "ec2_endpoint", /*allow_http=*/true, &out->ec2_endpoint));
  TRELLIS_RETURN_IF_ERROR(ReadUrl(data, "iam_endpoint", /*allow_http=*/true, &out->iam_endpoint));
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("skip_block_device", &out->skip_block_device));
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("disable_instance_profile_selectors",
                                        &out->disable_instance_profile_selectors));
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("allow_reattestation", &out->allow_reattestation));
  return data.ReadNonEmptyString("agent_path_template", &out->agent_path_template);
}

absl::Status ReadGcpIitServerConfig(Section& data, GcpIitServerAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(
      ReadNonEmptyItems(data, "projectid_allow_list", &out->projectid_allow_list));
  TRELLIS_RETURN_IF_ERROR(
      RequireNonEmptyList(data, "projectid_allow_list", out->projectid_allow_list));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("audience", &out->audience));
  const Value* certs = data.Get("google_certs_url");
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("google_certs_url", &out->google_certs_url));
  if (certs != nullptr && absl::StartsWith(out->google_certs_url, "http://")) {
    return data.WrongValue("google_certs_url", *certs, "an https:// URL or a file path");
  }
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("use_instance_metadata", &out->use_instance_metadata));
  TRELLIS_RETURN_IF_ERROR(
      ReadUrl(data, "compute_endpoint", /*allow_http=*/true, &out->compute_endpoint));
  TRELLIS_RETURN_IF_ERROR(
      data.ReadNonEmptyString("service_account_file", &out->service_account_file));
  TRELLIS_RETURN_IF_ERROR(ReadNonEmptyItems(data, "allowed_label_keys", &out->allowed_label_keys));
  TRELLIS_RETURN_IF_ERROR(
      ReadNonEmptyItems(data, "allowed_metadata_keys", &out->allowed_metadata_keys));
  TRELLIS_RETURN_IF_ERROR(
      data.ReadInt("max_metadata_value_size", 1, 1 << 20, &out->max_metadata_value_size));
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("allow_reattestation", &out->allow_reattestation));
  return data.ReadNonEmptyString("agent_path_template", &out->agent_path_template);
}

absl::Status ReadAzureMsiServerConfig(Section& data, AzureMsiServerAttestorConfig* out) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> blocks, ReadLabelledBlocks(data, "tenants"));
  if (blocks.empty()) {
    return data.ErrorAt(data.value().pos,
                        data.KeyPath("tenants") + ": at least one tenant is required");
  }
  for (const LabelledBlock& block : blocks) {
    if (block.label.empty() || block.label.find('/') != std::string::npos) {
      return data.ErrorAt(block.pos,
                          block.path + ": a tenant ID must be non-empty and hold no '/'");
    }
    TRELLIS_ASSIGN_OR_RETURN(Section t, Section::Open(data.doc(), *block.body, block.path));
    AzureMsiTenantConfig tenant;
    TRELLIS_RETURN_IF_ERROR(t.ReadNonEmptyString("resource_id", &tenant.resource_id));
    TRELLIS_RETURN_IF_ERROR(t.Finish());
    out->tenants.emplace(block.label, std::move(tenant));
  }
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("jwks_url", &out->jwks_url));
  TRELLIS_RETURN_IF_ERROR(data.ReadBool("allow_reattestation", &out->allow_reattestation));
  return data.ReadNonEmptyString("agent_path_template", &out->agent_path_template);
}

absl::Status ReadK8sPsatAgentConfig(Section& data, K8sPsatAgentAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("cluster", &out->cluster));
  if (out->cluster.empty()) {
    return data.ErrorAt(data.PositionOf("cluster"),
                        data.KeyPath("cluster") + ": must not be empty");
  }
  return data.ReadNonEmptyString("token_path", &out->token_path);
}

absl::Status ReadAwsIidAgentConfig(Section& data, AwsIidAgentAttestorConfig* out) {
  return ReadUrl(data, "ec2_metadata_endpoint", /*allow_http=*/true, &out->ec2_metadata_endpoint);
}

absl::Status ReadGcpIitAgentConfig(Section& data, GcpIitAgentAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(
      data.ReadNonEmptyString("identity_token_host", &out->identity_token_host));
  return data.ReadNonEmptyString("service_account", &out->service_account);
}

absl::Status ReadAzureMsiAgentConfig(Section& data, AzureMsiAgentAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("resource_id", &out->resource_id));
  return ReadUrl(data, "metadata_endpoint", /*allow_http=*/true, &out->metadata_endpoint);
}

absl::Status ReadK8sWorkloadConfig(Section& data, K8sWorkloadAttestorConfig* out) {
  // 0 is how SPIRE configurations say "not the read-only port".
  int64_t read_only = out->kubelet_read_only_port;
  TRELLIS_RETURN_IF_ERROR(data.ReadInt("kubelet_read_only_port", 0, 65535, &read_only));
  out->kubelet_read_only_port = static_cast<uint16_t>(read_only);
  TRELLIS_RETURN_IF_ERROR(data.ReadPort("kubelet_secure_port", &out->kubelet_secure_port));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("kubelet_host", &out->kubelet_host));
  TRELLIS_RETURN_IF_ERROR(data.ReadInt("max_poll_attempts", 1, 100000, &out->max_poll_attempts));
  TRELLIS_RETURN_IF_ERROR(data.ReadDuration("poll_retry_interval", &out->poll_retry_interval));
  if (out->poll_retry_interval <= absl::ZeroDuration()) {
    return data.ErrorAt(data.PositionOf("poll_retry_interval"),
                        data.KeyPath("poll_retry_interval") + ": must be positive");
  }
  TRELLIS_RETURN_IF_ERROR(
      data.ReadBool("skip_kubelet_verification", &out->skip_kubelet_verification));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("kubelet_ca_path", &out->kubelet_ca_path));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("token_path", &out->token_path));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("certificate_path", &out->certificate_path));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("private_key_path", &out->private_key_path));
  if (out->certificate_path.empty() != out->private_key_path.empty()) {
    return data.ErrorAt(data.value().pos,
                        data.path() + ": set certificate_path and private_key_path together");
  }
  TRELLIS_RETURN_IF_ERROR(
      data.ReadBool("use_anonymous_authentication", &out->use_anonymous_authentication));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("node_name_env", &out->node_name_env));
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("node_name", &out->node_name));
  return data.ReadBool("disable_container_selectors", &out->disable_container_selectors);
}

absl::Status ReadDockerWorkloadConfig(Section& data, DockerWorkloadAttestorConfig* out) {
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("docker_socket_path", &out->docker_socket_path));
  if (data.Get("docker_socket_path") != nullptr &&
      !absl::StartsWith(out->docker_socket_path, "unix://")) {
    return data.WrongValue("docker_socket_path", *data.Get("docker_socket_path"),
                           "a unix:// socket address");
  }
  TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("docker_version", &out->docker_version));
  TRELLIS_RETURN_IF_ERROR(
      ReadNonEmptyItems(data, "container_id_cgroup_matchers", &out->container_id_cgroup_matchers));
  for (const std::string& m : out->container_id_cgroup_matchers) {
    if (m.find("<id>") == std::string::npos) {
      return data.ErrorAt(data.PositionOf("container_id_cgroup_matchers"),
                          data.KeyPath("container_id_cgroup_matchers") + ": " + QuoteForError(m) +
                              " has no <id> element");
    }
  }
  return absl::OkStatus();
}

}  // namespace trellis::common::config

// Reads entry files for the bulk entry commands.
#include "cmd/entry_data.h"

#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace trellis::cmd {
namespace {

using nlohmann::json;
namespace v1 = server::v1;

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(where + ": " + what);
}

absl::StatusOr<json> ParseDocument(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("the file is not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("the file must hold a JSON object");
  return doc;
}

absl::StatusOr<std::string> ReadString(const json& v, const std::string& where) {
  if (!v.is_string()) return Bad(where, "expected a string");
  return v.get<std::string>();
}

// "spiffe://td/path", or SPIRE's {"trust_domain": "td", "path": "/path"}.
absl::StatusOr<std::string> ReadSpiffeId(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_object()) return Bad(where, "expected a SPIFFE ID string or {trust_domain, path}");
  std::string td, path;
  for (const auto& [key, value] : v.items()) {
    if (key != "trust_domain" && key != "path") return Bad(where, "unknown key \"" + key + "\"");
    if (!value.is_string()) return Bad(where + "." + key, "expected a string");
    (key == "trust_domain" ? td : path) = value.get<std::string>();
  }
  if (td.empty()) return Bad(where, "trust_domain is required");
  return "spiffe://" + td + path;
}

absl::StatusOr<int64_t> ReadInt(const json& v, const std::string& where, int64_t max) {
  if (!v.is_number_integer()) return Bad(where, "expected an integer");
  int64_t n = v.get<int64_t>();
  if (n < 0 || n > max) return Bad(where, absl::StrCat("expected 0 to ", max));
  return n;
}

absl::StatusOr<bool> ReadBool(const json& v, const std::string& where) {
  if (!v.is_boolean()) return Bad(where, "expected true or false");
  return v.get<bool>();
}

absl::StatusOr<std::vector<std::string>> ReadStrings(const json& v, const std::string& where) {
  if (!v.is_array()) return Bad(where, "expected a list of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) return Bad(absl::StrCat(where, "[", i, "]"), "expected a string");
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

absl::Status ReadSelectors(const json& v, const std::string& where, v1::Entry* e) {
  if (!v.is_array()) return Bad(where, "expected a list of {type, value}");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = absl::StrCat(where, "[", i, "]");
    if (!v[i].is_object()) return Bad(at, "expected {type, value}");
    v1::Selector* s = e->add_selectors();
    for (const auto& [key, value] : v[i].items()) {
      if (key != "type" && key != "value") return Bad(at, "unknown key \"" + key + "\"");
      if (!value.is_string()) return Bad(at + "." + key, "expected a string");
      (key == "type" ? *s->mutable_type() : *s->mutable_value()) = value.get<std::string>();
    }
    if (s->type().empty() || s->value().empty()) return Bad(at, "type and value are required");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Entry> ReadEntry(const json& v, const std::string& where, bool for_update) {
  if (!v.is_object()) return Bad(where, "expected an entry object");
  v1::Entry e;
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  for (const auto& [key, value] : v.items()) {
    const std::string at = where + "." + key;
    absl::Status st;
    if (key == "id") {
      absl::StatusOr<std::string> s = ReadString(value, at);
      if (s.ok()) e.set_id(*s);
      st = s.status();
    } else if (key == "spiffe_id" || key == "parent_id") {
      absl::StatusOr<std::string> s = ReadSpiffeId(value, at);
      if (s.ok()) (key == "spiffe_id" ? *e.mutable_spiffe_id() : *e.mutable_parent_id()) = *s;
      st = s.status();
    } else if (key == "selectors") {
      st = ReadSelectors(value, at, &e);
    } else if (key == "x509_svid_ttl" || key == "ttl" || key == "jwt_svid_ttl") {
      absl::StatusOr<int64_t> n = ReadInt(value, at, kInt32Max);
      if (n.ok()) {
        if (key == "jwt_svid_ttl") {
          e.set_jwt_svid_ttl(static_cast<int32_t>(*n));
        } else {
          e.set_x509_svid_ttl(static_cast<int32_t>(*n));
        }
      }
      st = n.status();
    } else if (key == "expires_at") {
      absl::StatusOr<int64_t> n = ReadInt(value, at, std::numeric_limits<int64_t>::max());
      if (n.ok()) e.set_expires_at(*n);
      st = n.status();
    } else if (key == "admin" || key == "downstream") {
      absl::StatusOr<bool> b = ReadBool(value, at);
      if (b.ok()) (key == "admin" ? e.set_admin(*b) : e.set_downstream(*b));
      st = b.status();
    } else if (key == "federates_with" || key == "dns_names") {
      absl::StatusOr<std::vector<std::string>> list = ReadStrings(value, at);
      if (list.ok()) {
        for (auto& s : *list) {
          *(key == "dns_names" ? e.add_dns_names() : e.add_federates_with()) = std::move(s);
        }
      }
      st = list.status();
    } else if (key == "hint") {
      absl::StatusOr<std::string> s = ReadString(value, at);
      if (s.ok()) e.set_hint(*s);
      st = s.status();
    } else {
      st = Bad(where, "unknown key \"" + key + "\"");
    }
    if (!st.ok()) return st;
  }
  if (for_update && e.id().empty()) return Bad(where, "id is required to update an entry");
  if (e.spiffe_id().empty()) return Bad(where, "spiffe_id is required");
  if (e.parent_id().empty()) return Bad(where, "parent_id is required");
  if (e.selectors_size() == 0) return Bad(where, "at least one selector is required");
  return e;
}

}  // namespace

absl::StatusOr<std::vector<v1::Entry>> ParseEntryData(std::string_view text, bool for_update) {
  absl::StatusOr<json> doc = ParseDocument(text);
  if (!doc.ok()) return doc.status();
  for (const auto& [key, value] : doc->items()) {
    if (key != "entries") return Bad("file", "unknown key \"" + key + "\"");
  }
  if (!doc->contains("entries") || !(*doc)["entries"].is_array()) {
    return absl::InvalidArgumentError("file: expected {\"entries\": [...]}");
  }
  std::vector<v1::Entry> out;
  const json& entries = (*doc)["entries"];
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StatusOr<v1::Entry> e =
        ReadEntry(entries[i], absl::StrCat("entries[", i, "]"), for_update);
    if (!e.ok()) return e.status();
    out.push_back(*std::move(e));
  }
  if (out.empty()) return absl::InvalidArgumentError("file: \"entries\" is empty");
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseEntryIds(std::string_view text) {
  absl::StatusOr<json> doc = ParseDocument(text);
  if (!doc.ok()) return doc.status();
  for (const auto& [key, value] : doc->items()) {
    if (key != "ids") return Bad("file", "unknown key \"" + key + "\"");
  }
  if (!doc->contains("ids")) return absl::InvalidArgumentError("file: expected {\"ids\": [...]}");
  absl::StatusOr<std::vector<std::string>> ids = ReadStrings((*doc)["ids"], "ids");
  if (!ids.ok()) return ids.status();
  if (ids->empty()) return absl::InvalidArgumentError("file: \"ids\" is empty");
  for (size_t i = 0; i < ids->size(); ++i) {
    if ((*ids)[i].empty()) return Bad(absl::StrCat("ids[", i, "]"), "empty id");
  }
  return ids;
}

absl::StatusOr<std::string> ReadDataFile(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace trellis::cmd

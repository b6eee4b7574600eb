// Snapshot queries (entry matching, bundle selection) and the once-per-bundle encoding.
#include "workload_api/identity_snapshot.h"

#include <algorithm>

namespace trellis::workload_api {

CachedSvid::CachedSvid(std::string_view entry_id, const std::vector<std::string>& chain_der,
                       std::string_view key_pkcs8_der) {
  size_t chain = 0;
  for (const std::string& der : chain_der) chain += der.size();
  std::string bytes;
  bytes.reserve(entry_id.size() + chain + key_pkcs8_der.size());
  bytes.append(entry_id);
  for (const std::string& der : chain_der) bytes.append(der);
  bytes.append(key_pkcs8_der);
  id_size_ = static_cast<uint32_t>(entry_id.size());
  chain_size_ = static_cast<uint32_t>(chain);
  leaf_size_ = chain_der.empty() ? 0 : static_cast<uint32_t>(chain_der.front().size());
  bytes_ = common::SecretBytes(std::move(bytes));
}

RenderedBundle::RenderedBundle(std::shared_ptr<const common::Bundle> bundle)
    : bundle_(std::move(bundle)), x509_der_(common::BundleToDer(*bundle_)) {}

std::shared_ptr<const RenderedBundle> RenderedBundle::Of(
    std::shared_ptr<const common::Bundle> bundle) {
  if (!bundle) return nullptr;
  return std::shared_ptr<const RenderedBundle>(new RenderedBundle(std::move(bundle)));
}

std::vector<const CachedEntry*> IdentitySnapshot::EntriesFor(
    const std::vector<std::string>& selectors) const {
  std::vector<const CachedEntry*> out;
  // Sorted once here rather than once per entry: this runs for every stream's first message
  // over every cached entry. Same rule as attestors::SelectorsSubset.
  std::vector<std::string> have(selectors);
  std::sort(have.begin(), have.end());
  for (const auto& [id, entry] : entries) {
    // An entry without selectors identifies nobody.
    if (!entry || entry->selectors.empty()) continue;
    bool all = std::all_of(
        entry->selectors.begin(), entry->selectors.end(),
        [&](const std::string& s) { return std::binary_search(have.begin(), have.end(), s); });
    if (all) out.push_back(entry.get());
  }
  std::sort(out.begin(), out.end(), [](const CachedEntry* a, const CachedEntry* b) {
    if (a->created_at != b->created_at) return a->created_at < b->created_at;
    return a->id < b->id;
  });
  return out;
}

std::vector<Identity> IdentitySnapshot::IdentitiesFor(
    const std::vector<std::string>& selectors) const {
  std::vector<Identity> out;
  for (const CachedEntry* entry : EntriesFor(selectors)) {
    auto it = svids.find(entry->id);
    if (it != svids.end() && it->second) out.push_back(Identity{entry, it->second.get()});
  }
  return out;
}

const RenderedBundle* IdentitySnapshot::BundleOf(const common::TrustDomain& td) const {
  if (bundle && bundle->bundle().trust_domain() == td) return bundle.get();
  auto it = federated.find(td.name());
  return it == federated.end() ? nullptr : it->second.get();
}

std::map<std::string, const RenderedBundle*> IdentitySnapshot::BundlesFor(
    const std::vector<Identity>& ids, bool include_own) const {
  std::map<std::string, const RenderedBundle*> out;
  if (include_own && bundle) out[bundle->bundle().trust_domain().IdString()] = bundle.get();
  for (const Identity& id : ids) {
    for (const std::string& td : id.entry->federates_with) {
      auto it = federated.find(td);
      if (it != federated.end() && it->second) {
        out[it->second->bundle().trust_domain().IdString()] = it->second.get();
      }
    }
  }
  return out;
}

}  // namespace trellis::workload_api

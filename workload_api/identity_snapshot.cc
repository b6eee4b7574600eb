// Snapshot queries (entry matching, bundle selection) and the once-per-bundle encoding.
#include "workload_api/identity_snapshot.h"

#include <algorithm>

namespace trellis::workload_api {

namespace {

// PKCS#8 of a P-256 key as OpenSSL writes it: this prefix, the 32-byte scalar, the middle,
// then the 65-byte uncompressed public point.
constexpr unsigned char kP256Pkcs8Prefix[] = {
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
constexpr unsigned char kP256Pkcs8Middle[] = {0xa1, 0x44, 0x03, 0x42, 0x00};
constexpr size_t kScalarSize = 32;
constexpr size_t kPointSize = 65;
constexpr size_t kP256Pkcs8Size =
    sizeof(kP256Pkcs8Prefix) + kScalarSize + sizeof(kP256Pkcs8Middle) + kPointSize;

std::string_view Bytes(const unsigned char* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace

CachedSvid::CachedSvid(std::string_view entry_id, const std::vector<std::string>& chain_der,
                       std::string_view key_pkcs8_der) {
  size_t chain = 0;
  for (const std::string& der : chain_der) chain += der.size();
  std::string_view leaf = chain_der.empty() ? std::string_view() : chain_der.front();
  // The compact form only when the key has exactly the expected layout and its public point
  // is in the leaf; anything else is kept as given.
  std::string_view key = key_pkcs8_der;
  size_t point_in_leaf = std::string_view::npos;
  if (key.size() == kP256Pkcs8Size &&
      key.substr(0, sizeof(kP256Pkcs8Prefix)) ==
          Bytes(kP256Pkcs8Prefix, sizeof(kP256Pkcs8Prefix)) &&
      key.substr(sizeof(kP256Pkcs8Prefix) + kScalarSize, sizeof(kP256Pkcs8Middle)) ==
          Bytes(kP256Pkcs8Middle, sizeof(kP256Pkcs8Middle))) {
    point_in_leaf = leaf.find(key.substr(kP256Pkcs8Size - kPointSize));
  }
  if (point_in_leaf != std::string_view::npos) {
    key = key.substr(sizeof(kP256Pkcs8Prefix), kScalarSize);
    point_offset_ = static_cast<uint32_t>(point_in_leaf);
  }
  std::string bytes;
  bytes.reserve(entry_id.size() + chain + key.size());
  bytes.append(entry_id);
  for (const std::string& der : chain_der) bytes.append(der);
  bytes.append(key);
  id_size_ = static_cast<uint32_t>(entry_id.size());
  chain_size_ = static_cast<uint32_t>(chain);
  leaf_size_ = static_cast<uint32_t>(leaf.size());
  bytes_ = common::SecretBytes(std::move(bytes));
}

void CachedSvid::KeyPkcs8Der(std::string* out) const {
  std::string_view key = bytes_.view().substr(id_size_ + chain_size_);
  if (!compact_key()) {
    out->assign(key);
    return;
  }
  out->clear();
  out->reserve(kP256Pkcs8Size);
  out->append(Bytes(kP256Pkcs8Prefix, sizeof(kP256Pkcs8Prefix)));
  out->append(key);
  out->append(Bytes(kP256Pkcs8Middle, sizeof(kP256Pkcs8Middle)));
  out->append(leaf().substr(point_offset_, kPointSize));
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

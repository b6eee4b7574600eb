// Snapshot queries (entry matching, bundle selection) and the once-per-bundle encoding.
#include "workload_api/identity_snapshot.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

#include "common/der.h"
#include "openssl/crypto.h"

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

uint32_t Bound(const char* data, size_t index) {
  uint32_t bound;
  std::memcpy(&bound, data + index * sizeof(uint32_t), sizeof(bound));
  return bound;
}

}  // namespace

PackedTime::PackedTime(absl::Time t) {
  if (t == absl::InfinitePast()) {
    micros_ = std::numeric_limits<int64_t>::min();
  } else if (t == absl::InfiniteFuture()) {
    micros_ = std::numeric_limits<int64_t>::max();
  } else {
    // Finite times beyond the range saturate to the infinities, which is what they compare as.
    micros_ = absl::ToUnixMicros(t);
  }
}

PackedTime::operator absl::Time() const {
  if (micros_ == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  if (micros_ == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  return absl::FromUnixMicros(micros_);
}

std::string_view StringList::at(size_t i) const { return CachedEntry::ItemOf(data_, first_ + i); }

std::string_view StringList::const_iterator::operator*() const {
  return CachedEntry::ItemOf(data_, index_);
}

std::string_view CachedEntry::ItemOf(const char* data, size_t index) {
  uint32_t begin = Bound(data, index);
  return std::string_view(data + begin, Bound(data, index + 1) - begin);
}

CachedEntry::CachedEntry(std::string_view id, const common::SpiffeId& spiffe_id,
                         const std::vector<std::string>& selectors,
                         const std::vector<std::string>& federates_with, std::string_view hint,
                         int64_t revision, int64_t created_at, int32_t jwt_svid_ttl)
    : n_selectors_(static_cast<uint32_t>(selectors.size())),
      n_federates_(static_cast<uint32_t>(federates_with.size())),
      jwt_svid_ttl_(jwt_svid_ttl),
      revision_(revision),
      created_at_(created_at) {
  const std::string spiffe = spiffe_id.String();
  std::vector<std::string_view> items = {id, spiffe, hint};
  items.insert(items.end(), selectors.begin(), selectors.end());
  items.insert(items.end(), federates_with.begin(), federates_with.end());
  const size_t table = (items.size() + 1) * sizeof(uint32_t);
  size_t size = table;
  for (std::string_view item : items) size += item.size();
  data_ = std::make_unique_for_overwrite<char[]>(size);
  auto bound = static_cast<uint32_t>(table);
  std::memcpy(data_.get(), &bound, sizeof(bound));
  for (size_t k = 0; k < items.size(); ++k) {
    std::memcpy(data_.get() + bound, items[k].data(), items[k].size());
    bound += static_cast<uint32_t>(items[k].size());
    std::memcpy(data_.get() + (k + 1) * sizeof(uint32_t), &bound, sizeof(bound));
  }
}

size_t CachedEntry::BufferSize() const {
  return data_ ? Bound(data_.get(), kFixed + n_selectors_ + n_federates_) : 0;
}

CachedEntry::CachedEntry(const CachedEntry& other)
    : n_selectors_(other.n_selectors_),
      n_federates_(other.n_federates_),
      jwt_svid_ttl_(other.jwt_svid_ttl_),
      revision_(other.revision_),
      created_at_(other.created_at_) {
  size_t size = other.BufferSize();
  data_ = std::make_unique_for_overwrite<char[]>(size);
  if (size > 0) std::memcpy(data_.get(), other.data_.get(), size);
}

CachedEntry& CachedEntry::operator=(const CachedEntry& other) {
  if (this != &other) *this = CachedEntry(other);
  return *this;
}

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
  size_ = static_cast<uint32_t>(entry_id.size() + chain + key.size());
  bytes_ = std::make_unique_for_overwrite<char[]>(size_);
  char* out = bytes_.get();
  std::memcpy(out, entry_id.data(), entry_id.size());
  out += entry_id.size();
  for (const std::string& der : chain_der) {
    std::memcpy(out, der.data(), der.size());
    out += der.size();
  }
  std::memcpy(out, key.data(), key.size());
  id_size_ = static_cast<uint32_t>(entry_id.size());
  chain_size_ = static_cast<uint32_t>(chain);
}

std::string_view CachedSvid::leaf() const {
  // Read from the leaf's DER header; anything that is not one DER element is the whole chain.
  absl::StatusOr<common::der::Element> leaf = common::der::Reader(chain()).ReadAny();
  return leaf.ok() ? leaf->encoded : chain();
}

CachedSvid::~CachedSvid() { Wipe(); }

CachedSvid::CachedSvid(CachedSvid&& other) noexcept
    : not_before(other.not_before),
      not_after(other.not_after),
      renew_at(other.renew_at),
      entry_revision(other.entry_revision),
      bytes_(std::move(other.bytes_)),
      size_(std::exchange(other.size_, 0)),
      id_size_(std::exchange(other.id_size_, 0)),
      chain_size_(std::exchange(other.chain_size_, 0)),
      point_offset_(std::exchange(other.point_offset_, kNoPoint)) {}

CachedSvid& CachedSvid::operator=(CachedSvid&& other) noexcept {
  if (this != &other) {
    Wipe();
    not_before = other.not_before;
    not_after = other.not_after;
    renew_at = other.renew_at;
    entry_revision = other.entry_revision;
    bytes_ = std::move(other.bytes_);
    size_ = std::exchange(other.size_, 0);
    id_size_ = std::exchange(other.id_size_, 0);
    chain_size_ = std::exchange(other.chain_size_, 0);
    point_offset_ = std::exchange(other.point_offset_, kNoPoint);
  }
  return *this;
}

void CachedSvid::Wipe() {
  if (bytes_) OPENSSL_cleanse(bytes_.get(), size_);
  bytes_.reset();
  size_ = 0;
}

void CachedSvid::KeyPkcs8Der(std::string* out) const {
  std::string_view key = view().substr(id_size_ + chain_size_);
  if (!compact_key()) {
    out->assign(key);
    return;
  }
  out->clear();
  out->reserve(kP256Pkcs8Size);
  out->append(Bytes(kP256Pkcs8Prefix, sizeof(kP256Pkcs8Prefix)));
  out->append(key);
  out->append(Bytes(kP256Pkcs8Middle, sizeof(kP256Pkcs8Middle)));
  out->append(chain().substr(point_offset_, kPointSize));  // the leaf opens the chain
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
  for (const auto& entry : entries) {
    // An entry without selectors identifies nobody.
    if (!entry || entry->selectors().empty()) continue;
    StringList wanted = entry->selectors();
    bool all = std::all_of(wanted.begin(), wanted.end(), [&](std::string_view s) {
      return std::binary_search(have.begin(), have.end(), s, std::less<>());
    });
    if (all) out.push_back(entry.get());
  }
  std::sort(out.begin(), out.end(), [](const CachedEntry* a, const CachedEntry* b) {
    if (a->created_at() != b->created_at()) return a->created_at() < b->created_at();
    return a->id() < b->id();
  });
  return out;
}

std::vector<Identity> IdentitySnapshot::IdentitiesFor(
    const std::vector<std::string>& selectors) const {
  std::vector<Identity> out;
  for (const CachedEntry* entry : EntriesFor(selectors)) {
    auto it = svids.find(entry->id());
    if (it != svids.end() && *it) out.push_back(Identity{entry, it->get()});
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
    for (std::string_view td : id.entry->federates_with()) {
      auto it = federated.find(td);
      if (it != federated.end() && it->second) {
        out[it->second->bundle().trust_domain().IdString()] = it->second.get();
      }
    }
  }
  return out;
}

}  // namespace trellis::workload_api

// What workloads may receive, frozen: entries, their X509-SVIDs and the bundles, each bundle
// with its wire encoding rendered once for every stream that sends it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/openssl_util.h"
#include "common/spiffe_id.h"
#include "workload_api/shared_map.h"

namespace trellis::workload_api {

// Strings kept one after another in a CachedEntry's buffer, read as views. The list and its
// iterators point into the entry's buffer and are valid while the entry is.
class StringList {
 public:
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string_view*;
    using reference = std::string_view;

    const_iterator() = default;
    std::string_view operator*() const;
    const_iterator& operator++() {
      ++index_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++index_;
      return before;
    }
    bool operator==(const const_iterator& other) const { return index_ == other.index_; }

   private:
    friend class StringList;
    const_iterator(const char* data, size_t index) : data_(data), index_(index) {}
    const char* data_ = nullptr;
    size_t index_ = 0;  // in the entry's table
  };

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::string_view at(size_t i) const;
  const_iterator begin() const { return const_iterator(data_, first_); }
  const_iterator end() const { return const_iterator(data_, first_ + count_); }
  std::vector<std::string> ToVector() const { return std::vector<std::string>(begin(), end()); }

 private:
  friend class CachedEntry;
  StringList(const char* data, size_t first, size_t count)
      : data_(data), first_(first), count_(count) {}
  const char* data_;
  size_t first_;
  size_t count_;
};

// A registration entry as the agent holds it (selectors as "type:value"). An agent caches
// thousands, so all of an entry's strings share one buffer: a table of where each ends, then
// the id, the SPIFFE ID, the hint, the selectors and the federated trust domains.
class CachedEntry {
 public:
  CachedEntry(std::string_view id, const common::SpiffeId& spiffe_id,
              const std::vector<std::string>& selectors,
              const std::vector<std::string>& federates_with, std::string_view hint,
              int64_t revision, int64_t created_at, int32_t jwt_svid_ttl);
  CachedEntry(const CachedEntry& other);
  CachedEntry& operator=(const CachedEntry& other);
  CachedEntry(CachedEntry&&) noexcept = default;
  CachedEntry& operator=(CachedEntry&&) noexcept = default;

  std::string_view id() const { return Item(kId); }
  std::string_view spiffe_id() const { return Item(kSpiffeId); }
  std::string_view hint() const { return Item(kHint); }
  StringList selectors() const { return StringList(data_.get(), kFixed, n_selectors_); }
  // Trust domain names.
  StringList federates_with() const {
    return StringList(data_.get(), kFixed + n_selectors_, n_federates_);
  }
  int64_t revision() const { return revision_; }
  int64_t created_at() const { return created_at_; }
  int32_t jwt_svid_ttl() const { return jwt_svid_ttl_; }

 private:
  friend class StringList;
  enum : uint32_t { kId = 0, kSpiffeId = 1, kHint = 2, kFixed = 3 };
  // The buffer opens with uint32 bounds[items + 1]: item k is [bounds[k], bounds[k + 1]).
  static std::string_view ItemOf(const char* data, size_t index);
  std::string_view Item(size_t index) const { return ItemOf(data_.get(), index); }
  size_t BufferSize() const;

  std::unique_ptr<char[]> data_;
  uint32_t n_selectors_ = 0;
  uint32_t n_federates_ = 0;
  int32_t jwt_svid_ttl_ = 0;
  int64_t revision_ = 0;
  int64_t created_at_ = 0;
};

// A point in time in 8 bytes where absl::Time takes 16: microseconds since the Unix epoch,
// the infinite past and future kept as such. Converts to and from absl::Time implicitly, so
// it reads like one.
class PackedTime {
 public:
  PackedTime() = default;
  PackedTime(absl::Time t);  // NOLINT(google-explicit-constructor)
  operator absl::Time() const;  // NOLINT(google-explicit-constructor)

 private:
  int64_t micros_ = 0;
};

// An X509-SVID as the agent keeps it. The entry id, the chain and the key share one buffer,
// wiped when the last snapshot holding the SVID goes: a cached SVID costs one allocation
// beyond the object itself. A P-256 key in the usual PKCS#8 layout is kept as its 32-byte
// private scalar: the rest of its 138 bytes is fixed, or is the public point, which the leaf
// certificate carries already; KeyPkcs8Der rebuilds the same bytes.
class CachedSvid {
 public:
  CachedSvid() = default;
  // `chain_der`: leaf first, no root.
  CachedSvid(std::string_view entry_id, const std::vector<std::string>& chain_der,
             std::string_view key_pkcs8_der);
  ~CachedSvid();
  CachedSvid(CachedSvid&& other) noexcept;
  CachedSvid& operator=(CachedSvid&& other) noexcept;
  CachedSvid(const CachedSvid&) = delete;
  CachedSvid& operator=(const CachedSvid&) = delete;

  // The entry it was minted for.
  std::string_view entry_id() const { return view().substr(0, id_size_); }
  // The chain's DER certificates, concatenated (as the Workload API sends them).
  std::string_view chain() const { return view().substr(id_size_, chain_size_); }
  std::string_view leaf() const;
  // Replaces `out` with the key's PKCS#8 DER (the caller wipes it when done).
  void KeyPkcs8Der(std::string* out) const;
  // True when the key is kept as its scalar alone.
  bool compact_key() const { return point_offset_ != kNoPoint; }

  PackedTime not_before;
  PackedTime not_after;
  // When the agent renews it (half-life with jitter, set at minting); by default at once.
  PackedTime renew_at = absl::InfinitePast();
  int64_t entry_revision = 0;  // revision the SVID was minted for

 private:
  static constexpr uint32_t kNoPoint = ~0u;
  std::string_view view() const { return std::string_view(bytes_.get(), size_); }
  void Wipe();

  std::unique_ptr<char[]> bytes_;  // entry id, chain, key (PKCS#8, or the P-256 scalar)
  uint32_t size_ = 0;
  uint32_t id_size_ = 0;
  uint32_t chain_size_ = 0;  // the leaf's own size is in its DER header
  uint32_t point_offset_ = kNoPoint;  // where the leaf holds the key's public point
};

inline std::string_view EntryKey(const CachedEntry& entry) { return entry.id(); }
inline std::string_view SvidKey(const CachedSvid& svid) { return svid.entry_id(); }
using EntryMap = SharedMap<CachedEntry, &EntryKey>;
using SvidMap = SharedMap<CachedSvid, &SvidKey>;

struct Identity {
  const CachedEntry* entry;
  const CachedSvid* svid;
};

// A trust bundle and its X.509 authorities as the Workload API sends them (concatenated
// ASN.1 DER), encoded when the bundle enters a snapshot rather than once per stream.
class RenderedBundle {
 public:
  static std::shared_ptr<const RenderedBundle> Of(std::shared_ptr<const common::Bundle> bundle);

  const common::Bundle& bundle() const { return *bundle_; }
  const std::shared_ptr<const common::Bundle>& shared_bundle() const { return bundle_; }
  const std::string& x509_der() const { return x509_der_; }

 private:
  explicit RenderedBundle(std::shared_ptr<const common::Bundle> bundle);
  std::shared_ptr<const common::Bundle> bundle_;
  std::string x509_der_;
};

// An immutable picture of the agent's identities; readers keep it alive with shared_ptr.
// Entries, SVIDs and bundles are immutable and shared between successive snapshots, so a new
// snapshot copies pointers, never certificates or keys.
struct IdentitySnapshot {
  // Increases with every snapshot the source publishes; streams skip anything older.
  uint64_t version = 0;
  // False until the agent has synced at least once: callers then get UNAVAILABLE.
  bool ready = false;
  std::shared_ptr<const RenderedBundle> bundle;
  // Trust domain name -> bundle.
  std::map<std::string, std::shared_ptr<const RenderedBundle>, std::less<>> federated;
  // Entry id -> entry; entry id -> SVID (entries without an SVID yet are absent there).
  EntryMap entries;
  SvidMap svids;

  // Entries whose selectors are a subset of `selectors` and that hold an SVID, ordered so the
  // first is the default identity (oldest entry first, then by id).
  std::vector<Identity> IdentitiesFor(const std::vector<std::string>& selectors) const;
  // Every entry matching `selectors`, SVID or not.
  std::vector<const CachedEntry*> EntriesFor(const std::vector<std::string>& selectors) const;
  // Own bundle plus `federates_with` bundles of `ids`, keyed by trust domain ID string.
  std::map<std::string, const RenderedBundle*> BundlesFor(const std::vector<Identity>& ids,
                                                          bool include_own) const;
  // The bundle (own or federated) for a trust domain; nullptr when unknown.
  const RenderedBundle* BundleOf(const common::TrustDomain& td) const;
};

}  // namespace trellis::workload_api

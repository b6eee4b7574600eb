// What workloads may receive, frozen: entries, their X509-SVIDs and the bundles, each bundle
// with its wire encoding rendered once for every stream that sends it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/openssl_util.h"
#include "common/spiffe_id.h"
#include "workload_api/shared_map.h"

namespace trellis::workload_api {

// A registration entry as the agent holds it (selectors as "type:value").
struct CachedEntry {
  std::string id;
  common::SpiffeId spiffe_id;
  std::vector<std::string> selectors;
  std::vector<std::string> federates_with;  // trust domain names
  std::string hint;
  int64_t revision = 0;
  int64_t created_at = 0;
  int32_t jwt_svid_ttl = 0;
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

  // The entry it was minted for.
  std::string_view entry_id() const { return bytes_.view().substr(0, id_size_); }
  // The chain's DER certificates, concatenated (as the Workload API sends them).
  std::string_view chain() const { return bytes_.view().substr(id_size_, chain_size_); }
  std::string_view leaf() const { return bytes_.view().substr(id_size_, leaf_size_); }
  // Replaces `out` with the key's PKCS#8 DER (the caller wipes it when done).
  void KeyPkcs8Der(std::string* out) const;
  // True when the key is kept as its scalar alone.
  bool compact_key() const { return point_offset_ != kNoPoint; }

  absl::Time not_before;
  absl::Time not_after;
  int64_t entry_revision = 0;  // revision the SVID was minted for
  // When the agent renews it (half-life with jitter, set at minting); by default at once.
  absl::Time renew_at = absl::InfinitePast();

 private:
  static constexpr uint32_t kNoPoint = ~0u;
  common::SecretBytes bytes_;  // entry id, chain, key (PKCS#8, or the P-256 scalar)
  uint32_t id_size_ = 0;
  uint32_t chain_size_ = 0;
  uint32_t leaf_size_ = 0;
  uint32_t point_offset_ = kNoPoint;  // where the leaf holds the key's public point
};

inline std::string_view EntryKey(const CachedEntry& entry) { return entry.id; }
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
  std::map<std::string, std::shared_ptr<const RenderedBundle>> federated;
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

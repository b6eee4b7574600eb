// Where the Workload API reads identities from: the current snapshot and its replacements.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "workload_api/identity_snapshot.h"

namespace trellis::workload_api {

class IdentitySource {
 public:
  using Listener = std::function<void(std::shared_ptr<const IdentitySnapshot>)>;

  virtual ~IdentitySource() = default;

  // The snapshot in force; never null.
  virtual std::shared_ptr<const IdentitySnapshot> Snapshot() const = 0;
  // Calls `listener` with every later snapshot, in publication order, until Unsubscribe. The
  // listener may run concurrently with Unsubscribe: it must guard its own target.
  virtual uint64_t Subscribe(Listener listener) = 0;
  virtual void Unsubscribe(uint64_t id) = 0;
};

}  // namespace trellis::workload_api

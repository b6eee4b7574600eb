// Change notices from PostgreSQL: LISTEN on the channel every change-log write notifies at
// commit, on a connection of its own, with reconnection.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "datastore/datastore.h"

namespace trellis::datastore {

// Opens its own connection to `dsn` and calls `on_change` for each notice whose payload is the
// schema that connection works in (servers of other schemas share the channel), and once
// after every reconnection. A lost connection is reopened with backoff (1 s doubling to 30 s).
// Connecting happens on the listener's thread, so this never blocks on the database.
std::unique_ptr<ChangeSubscription> ListenForPostgresChanges(std::string dsn,
                                                             std::function<void()> on_change);

// The channel the store's change-log writes notify on.
inline constexpr char kPostgresChangeChannel[] = "trellis_events";

}  // namespace trellis::datastore

// The entry point of trellis-datastore-postgres.so: checks it was built with its loader, takes
// over the log settings, opens the store.
#include <cstring>

#include "common/log.h"
#include "datastore/postgres/postgres_datastore.h"
#include "datastore/postgres_module.h"

extern "C" __attribute__((visibility("default"))) void trellis_datastore_postgres_open(
    const trellis::datastore::PostgresModuleArgs* args,
    absl::StatusOr<std::unique_ptr<trellis::datastore::DataStore>>* out) {
  using trellis::datastore::DataStore;
  if (args == nullptr || args->abi == nullptr ||
      std::strcmp(args->abi, TRELLIS_DATASTORE_ABI) != 0) {
    *out = absl::FailedPreconditionError(
        "the PostgreSQL module was built against other datastore headers than this "
        "trellis-server");
    return;
  }
  trellis::common::SetLogLevel(args->log_level);
  trellis::common::SetLogFormat(args->log_format);
  trellis::common::UseLogHooks(args->log_hooks);
  auto store =
      trellis::datastore::PostgresDataStore::Open(*args->connection_string, *args->options);
  if (!store.ok()) {
    *out = store.status();
    return;
  }
  *out = std::unique_ptr<DataStore>(std::move(*store));
}

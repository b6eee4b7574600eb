// Loading the PostgreSQL module: found by the executable's own path, loaded once, kept.
#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "datastore/postgres_module.h"

namespace trellis::datastore {
namespace {

ABSL_CONST_INIT absl::Mutex g_module_mu(absl::kConstInit);
// Never unloaded: stores opened through it run its code until the process ends.
PostgresModuleOpen g_open ABSL_GUARDED_BY(g_module_mu) = nullptr;

std::vector<std::string> Candidates() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  std::filesystem::path dir = exe.parent_path();
  return {(dir / kPostgresModuleFile).string(),
          (dir.parent_path() / "lib" / "trellis" / kPostgresModuleFile).string()};
}

absl::StatusOr<PostgresModuleOpen> Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_module_mu) {
  if (g_open != nullptr) return g_open;
  std::vector<std::string> candidates = Candidates();
  std::vector<std::string> problems;
  for (const std::string& path : candidates) {
    if (access(path.c_str(), F_OK) != 0) continue;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      problems.push_back(absl::StrCat(path, ": ", dlerror()));
      continue;
    }
    void* symbol = dlsym(handle, kPostgresModuleSymbol);
    if (symbol == nullptr) {
      problems.push_back(absl::StrCat(path, ": no ", kPostgresModuleSymbol));
      dlclose(handle);
      continue;
    }
    g_open = reinterpret_cast<PostgresModuleOpen>(symbol);
    return g_open;
  }
  if (problems.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("PostgreSQL support is the module ", kPostgresModuleFile,
                     ", not found at ", absl::StrJoin(candidates, " or ")));
  }
  return absl::FailedPreconditionError(absl::StrCat("cannot load the PostgreSQL module: ",
                                                    absl::StrJoin(problems, "; ")));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataStore>> OpenPostgresThroughModule(
    const std::string& connection_string, const DataStoreOptions& options) {
  PostgresModuleOpen open = nullptr;
  {
    absl::MutexLock lock(&g_module_mu);
    absl::StatusOr<PostgresModuleOpen> loaded = Load();
    if (!loaded.ok()) return loaded.status();
    open = *loaded;
  }
  PostgresModuleArgs args{
      TRELLIS_DATASTORE_ABI,     &connection_string,         &options,
      common::CurrentLogLevel(), common::CurrentLogFormat(), common::ProcessLogHooks()};
  absl::StatusOr<std::unique_ptr<DataStore>> out =
      absl::InternalError("the PostgreSQL module returned nothing");
  open(&args, &out);
  return out;
}

}  // namespace trellis::datastore

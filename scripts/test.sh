#!/usr/bin/env bash
# Builds Trellis and runs every test: unit, PostgreSQL (against a throwaway real server) and,
# as they exist, integration tests. Installs what it needs first. Usage:
#   scripts/test.sh                 release build with hardening, all tests
#   TRELLIS_SANITIZE=1 scripts/test.sh   the same under AddressSanitizer + UBSan (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

build_dir=build
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${TRELLIS_SANITIZE:-0}" = "1" ]; then
  build_dir=build-asan
  cmake_args+=(-DTRELLIS_SANITIZE=ON -DTRELLIS_BUILD_BENCH=OFF)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

start=$(date +%s)
cmake -S . -B "$build_dir" "${cmake_args[@]}"
cmake --build "$build_dir" -j"$(nproc)"
built=$(date +%s)
echo "test.sh: build took $((built - start)) s"

# Lock discipline: clang's thread-safety analysis over every file that annotates its locks.
if [ "${TRELLIS_SANITIZE:-0}" != "1" ]; then
  bash scripts/thread-safety.sh "$build_dir"
fi

# PostgreSQL tests need a real server: with-postgres.sh starts a throwaway cluster, exports
# its connection string, runs ctest and always tears the cluster down.
bash scripts/with-postgres.sh ctest --test-dir "$build_dir" -j"$(nproc)" --output-on-failure \
  --timeout 600
echo "test.sh: tests took $(($(date +%s) - built)) s (build + tests $(($(date +%s) - start)) s)"

#!/usr/bin/env bash
# Builds and runs every benchmark. Each prints its rate and its ratio against a floor measured
# in the same run on the same machine; PostgreSQL benchmarks run against a throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)"
for b in build/bench/*_bench; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  bash scripts/with-postgres.sh "$b"
done

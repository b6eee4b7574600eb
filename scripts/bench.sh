#!/usr/bin/env bash
# Builds and runs every benchmark. Each prints its rate and its ratio against a floor measured
# in the same run on the same machine; PostgreSQL benchmarks run against a throwaway cluster.
# The end-to-end ones (workload_api_bench, agent_memory_bench, server_mint_bench) start real
# trellis-server / trellis-agent processes from this build in temporary directories, and so do
# the Python ones (bench/*_bench.py, run after them with /usr/bin/python3).
# One benchmark failing does not stop the others; the exit status says whether any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)"
failed=()
for b in build/bench/*_bench; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  bash scripts/with-postgres.sh "$b" || failed+=("$(basename "$b")")
done
for b in bench/*_bench.py; do
  [ -f "$b" ] || continue
  echo "== $(basename "$b")"
  TRELLIS_SERVER_BIN="$PWD/build/cmd/trellis-server" \
    TRELLIS_AGENT_BIN="$PWD/build/cmd/trellis-agent" PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 "$b" || failed+=("$(basename "$b")")
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "bench.sh: failed or below target: ${failed[*]}" >&2
  exit 1
fi

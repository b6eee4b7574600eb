#!/usr/bin/env bash
# Builds the configuration fuzzer (clang, libFuzzer, ASan, UBSan) in build-fuzz/ and runs it for
# N seconds (default 60) on one core, seeded from examples/ and tests/testdata/config/.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${TRELLIS_FUZZ_BUILD_DIR:-$root/build-fuzz}"
lock=/tmp/trellis-build.lock

if [[ ! -f "$build/build.ninja" ]]; then
  flock "$lock" env CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
    -DTRELLIS_FUZZ=ON -DTRELLIS_BUILD_TESTS=OFF -DTRELLIS_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
flock "$lock" cmake --build "$build" -j2 --target config_fuzzer

corpus="$build/corpus/config"
mkdir -p "$corpus"
# Crash reproducers land in the build directory, not the source tree.
cd "$build"
exec nice -n 10 "$build/fuzz/config_fuzzer" \
  -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -dict="$root/fuzz/config.dict" -print_final_stats=1 \
  "$corpus" "$root/examples/single" "$root/examples/ha" "$root/tests/testdata/config"

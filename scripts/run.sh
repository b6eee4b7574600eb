#!/usr/bin/env bash
# The main job: installs what is needed, builds the Trellis binaries, checks the example
# configurations, then runs the nested topology of examples/nested on this machine, all on
# SQLite in a temporary directory: a root server, two region servers and a cluster server
# under one region, each tier with its agents. Workloads in three branches fetch SVIDs, the
# tiers their chains pass through are printed, each branch verifies another's X.509 and JWT
# SVIDs, and the root is stopped to show the tiers below it still issuing. Everything it
# started is stopped at the end.
#
# Usage: bash scripts/run.sh [--keep-running]
#   --keep-running   leave the topology running and print how to use and stop it
# With TRELLIS_BIN_DIR=DIR it uses the binaries already built in DIR (no install, no build).
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
  case "$arg" in
    --keep-running) ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

if [ -n "${TRELLIS_BIN_DIR:-}" ]; then
  bin=$(cd "$TRELLIS_BIN_DIR" && pwd)
else
  bash scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
  cmake --build build -j"$(nproc)" --target trellis-server trellis-agent
  bin="$PWD/build/cmd"
fi
server_bin="$bin/trellis-server"
agent_bin="$bin/trellis-agent"

printf '\n== Validating the example configurations\n'
status=0
for f in examples/*/server.conf examples/*/server.json; do
  [ -e "$f" ] || continue
  printf '%-40s ' "$f"
  "$server_bin" validate -config "$f" || status=1
done
for f in examples/*/agent.conf examples/*/agent.json; do
  [ -e "$f" ] || continue
  printf '%-40s ' "$f"
  "$agent_bin" validate -config "$f" || status=1
done
# The nested configurations are templates read with -expandEnv: check them with the values
# nested.env gives by default.
for f in examples/nested/*.conf; do
  case "$f" in
    *-agent.conf) b=$agent_bin ;;
    *) b=$server_bin ;;
  esac
  printf '%-40s ' "$f"
  (
    set -a
    # shellcheck source=examples/nested/nested.env
    . examples/nested/nested.env
    "$b" validate -config "$f" -expandEnv
  ) || status=1
done
if [ $status -ne 0 ]; then
  echo "run.sh: an example configuration is invalid" >&2
  exit 1
fi

# The deployment: the whole nested example, which prints each step and cleans up after itself.
TRELLIS_BIN_DIR="$bin" exec bash examples/nested/run.sh "$@"

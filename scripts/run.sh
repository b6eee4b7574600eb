#!/usr/bin/env bash
# The main job: installs what is needed, builds the Trellis binaries, and checks every example
# configuration with `validate`, showing that a broken one is refused with a precise error.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target trellis-server trellis-agent
bin=build/cmd

echo
echo "== Validating example configurations"
status=0
for f in examples/*/server.conf examples/*/server.json; do
  [ -e "$f" ] || continue
  printf '%-40s ' "$f"
  "$bin/trellis-server" validate -config "$f" || status=1
done
for f in examples/*/agent.conf examples/*/agent.json; do
  [ -e "$f" ] || continue
  printf '%-40s ' "$f"
  "$bin/trellis-agent" validate -config "$f" || status=1
done

echo
echo "== A broken configuration is refused with file, line and column"
broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT
cat > "$broken/server.conf" <<'CONF'
server {
  trust_domain = "example.org"
  bind_prot = 8081
}
plugins {
  DataStore "sql" { plugin_data { database_type = "sqlite3" connection_string = "x.db" } }
  KeyManager "memory" { plugin_data {} }
}
CONF
if "$bin/trellis-server" validate -config "$broken/server.conf"; then
  echo "unexpected: the broken configuration was accepted"
  status=1
fi
exit $status

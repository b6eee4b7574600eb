#!/usr/bin/env bash
# The main job: installs what is needed, builds the Trellis binaries, checks the example
# configurations, then runs a real deployment (one server, one agent, SQLite, all in a
# temporary directory), registers the current user as a workload, fetches its X509-SVID over
# the Workload API, verifies it with openssl, and stops everything cleanly.
#
# Usage: bash scripts/run.sh [--keep-running]
#   --keep-running   leave the server and agent running and print how to use and stop them
set -euo pipefail
cd "$(dirname "$0")/.."

keep_running=0
for arg in "$@"; do
  case "$arg" in
    --keep-running) keep_running=1 ;;
    -h | --help)
      sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target trellis-server trellis-agent
bin="$PWD/build/cmd"
server_bin="$bin/trellis-server"
agent_bin="$bin/trellis-agent"

step() { printf '\n== %s\n' "$*"; }

step "1. Validating the example configurations"
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
if [ $status -ne 0 ]; then
  echo "run.sh: an example configuration is invalid" >&2
  exit 1
fi

# ---- A real deployment in a temporary directory ----------------------------------------------
dir=$(mktemp -d /tmp/trellis-run.XXXXXX)
server_pid=""
agent_pid=""
cleanup() {
  local rc=$?
  if [ "$keep_running" = 1 ] && [ $rc -eq 0 ]; then
    return
  fi
  # Stop only what this script started, by PID.
  for pid in $agent_pid $server_pid; do
    if kill -0 "$pid" 2> /dev/null; then
      kill -TERM "$pid" 2> /dev/null || true
      wait "$pid" 2> /dev/null || true
    fi
  done
  if [ $rc -ne 0 ]; then
    echo "run.sh: failed; logs kept in $dir" >&2
    for log in "$dir"/server.log "$dir"/agent.log; do
      [ -e "$log" ] && { echo "--- $log (last lines)" >&2; tail -n 20 "$log" >&2; }
    done
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

# Waits up to $1 seconds for the command that follows to succeed (no fixed sleeps).
wait_until() {
  local timeout=$1
  shift
  local deadline=$((SECONDS + timeout))
  until "$@" > /dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      return 1
    fi
    sleep 0.2
  done
}

free_port() {
  /usr/bin/python3 -c \
    'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

td=example.org
port=$(free_port)
server_sock="$dir/server/api.sock"
agent_sock="$dir/agent/public/api.sock"
mkdir -p "$dir/server" "$dir/agent/public" "$dir/svid"

cat > "$dir/server.conf" << CONF
server {
  bind_address = "127.0.0.1"
  bind_port = "$port"
  socket_path = "$server_sock"
  trust_domain = "$td"
  data_dir = "$dir/server/data"
  log_level = "INFO"
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$dir/server/data/datastore.sqlite3"
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "$dir/server/data/keys.json"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
CONF

step "2. Starting trellis-server (trust domain $td, SQLite, port $port)"
echo "   config: $dir/server.conf   log: $dir/server.log"
"$server_bin" run -config "$dir/server.conf" > "$dir/server.log" 2>&1 &
server_pid=$!
if ! wait_until 60 "$server_bin" healthcheck -socketPath "$server_sock"; then
  echo "run.sh: the server did not become healthy" >&2
  exit 1
fi
"$server_bin" healthcheck -socketPath "$server_sock" | sed 's/^/   /'

step "3. Generating a join token and exporting the trust bundle for the agent"
token=$("$server_bin" token generate -ttl 600 -socketPath "$server_sock" | sed -n 's/^Token: *//p')
if [ -z "$token" ]; then
  echo "run.sh: token generate printed no token" >&2
  exit 1
fi
agent_id="spiffe://$td/spire/agent/join_token/$token"
"$server_bin" bundle show -format pem -socketPath "$server_sock" > "$dir/bootstrap.pem"
echo "   token: $token"
echo "   agent ID will be: $agent_id"
certs=$(grep -c 'BEGIN CERTIFICATE' "$dir/bootstrap.pem")
echo "   bundle: $dir/bootstrap.pem ($certs certificate(s))"

cat > "$dir/agent.conf" << CONF
agent {
  trust_domain = "$td"
  server_address = "127.0.0.1"
  server_port = "$port"
  data_dir = "$dir/agent/data"
  socket_path = "$agent_sock"
  trust_bundle_path = "$dir/bootstrap.pem"
  log_level = "INFO"
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "$dir/agent/data"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
CONF

step "4. Starting trellis-agent (attests with the join token)"
echo "   config: $dir/agent.conf   log: $dir/agent.log"
"$agent_bin" run -config "$dir/agent.conf" -joinToken "$token" > "$dir/agent.log" 2>&1 &
agent_pid=$!
if ! wait_until 60 "$agent_bin" healthcheck -socketPath "$agent_sock"; then
  echo "run.sh: the agent did not become healthy" >&2
  exit 1
fi
"$agent_bin" healthcheck -socketPath "$agent_sock" | sed 's/^/   /'

uid=$(id -u)
user=$(id -un)
workload_id="spiffe://$td/workload/$user"
step "5. Registering a workload: $workload_id for selector unix:uid:$uid"
"$server_bin" entry create -parentID "$agent_id" -spiffeID "$workload_id" \
  -selector "unix:uid:$uid" -socketPath "$server_sock" | sed 's/^/   /'

step "6. Fetching the X509-SVID over the Workload API (trellis-agent api fetch x509 -write)"
# The entry reaches the agent on its next sync (pushed at once, 5 s at worst): retry until then.
if ! wait_until 60 "$agent_bin" api fetch x509 -write "$dir/svid" -socketPath "$agent_sock"; then
  echo "run.sh: no SVID was served to this user" >&2
  "$agent_bin" api fetch x509 -socketPath "$agent_sock" >&2 || true
  exit 1
fi
"$agent_bin" api fetch x509 -write "$dir/svid" -socketPath "$agent_sock" | sed 's/^/   /'
ls -l "$dir/svid" | sed 's/^/   /'

step "7. Checking the SVID"
leaf="$dir/svid/svid.0.pem"
san=$(openssl x509 -in "$leaf" -noout -ext subjectAltName | grep -o 'URI:[^,]*' | sed 's/^URI://')
expiry=$(openssl x509 -in "$leaf" -noout -enddate | sed 's/^notAfter=//')
echo "   SPIFFE ID: $san"
echo "   Expires:   $expiry"
# svid.0.pem holds the leaf then any intermediates: they are the untrusted part of the chain.
verify=$(openssl verify -CAfile "$dir/svid/bundle.0.pem" -untrusted "$leaf" "$leaf" 2>&1) ||
  status=1
echo "   openssl verify -CAfile bundle.0.pem -untrusted svid.0.pem svid.0.pem: $verify"
if [ "$san" != "$workload_id" ]; then
  echo "run.sh: the SVID carries '$san', expected '$workload_id'" >&2
  status=1
fi
if [ $status -ne 0 ]; then
  exit 1
fi

if [ "$keep_running" = 1 ]; then
  step "Deployment left running (--keep-running)"
  cat << EOF
   Directory:        $dir
   Server PID $server_pid, admin socket: $server_sock
   Agent  PID $agent_pid, Workload API:  $agent_sock

   Try:
     export SPIFFE_ENDPOINT_SOCKET=unix://$agent_sock
     $agent_bin api fetch x509
     $agent_bin api fetch jwt -audience demo
     $server_bin entry show -socketPath $server_sock
     $server_bin agent list -socketPath $server_sock

   Stop it:
     kill -TERM $agent_pid $server_pid; rm -rf $dir
EOF
  exit 0
fi

step "8. Stopping the agent and the server (SIGTERM)"
kill -TERM "$agent_pid"
agent_rc=0
wait "$agent_pid" || agent_rc=$?
echo "   trellis-agent exited with status $agent_rc"
kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
echo "   trellis-server exited with status $server_rc"
agent_pid=""
server_pid=""
if [ $agent_rc -ne 0 ] || [ $server_rc -ne 0 ]; then
  echo "run.sh: a process did not stop cleanly" >&2
  exit 1
fi
echo
echo "Done: a server and an agent ran, the workload got $workload_id, and its chain verified."

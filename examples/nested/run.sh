#!/usr/bin/env bash
# Runs the nested topology on one machine, in a temporary directory: a root server with two
# root-tier agents, two region servers (each next to one of those agents, each with its own
# datastore), region agents, a cluster server under region A and a cluster agent. It
# registers a workload in three branches (region A, region B, the cluster) and shows each
# branch verifying another: X.509-SVID chains with openssl against another branch's bundle,
# JWT-SVIDs fetched from one agent and validated by another. Then it stops the root, shows the
# regions and the cluster still issuing, and brings the root back. Every process it starts is
# stopped by PID on exit; on failure the logs are kept.
#
# Usage: bash examples/nested/run.sh [--keep-running]
#   --keep-running   leave the whole topology running and print how to use and stop it
# Environment:
#   TRELLIS_BIN_DIR   where trellis-server and trellis-agent are (default: build/cmd)
#   REGION_B_DB_TYPE, REGION_B_DB_CONN   region B's datastore (default: SQLite); e.g.
#                     REGION_B_DB_TYPE=postgres REGION_B_DB_CONN="host=... dbname=..."
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

keep_running=0
for arg in "$@"; do
  case "$arg" in
    --keep-running) keep_running=1 ;;
    -h | --help)
      sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "nested/run.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

bin_dir=${TRELLIS_BIN_DIR:-$repo/build/cmd}
server_bin="$bin_dir/trellis-server"
agent_bin="$bin_dir/trellis-agent"
for b in "$server_bin" "$agent_bin"; do
  if [ ! -x "$b" ]; then
    echo "nested/run.sh: $b not found: build first (bash scripts/run.sh) or set TRELLIS_BIN_DIR" >&2
    exit 1
  fi
done

# ---- Environment for the configuration templates (read with -expandEnv) ----------------------
user_db_type=${REGION_B_DB_TYPE:-}
user_db_conn=${REGION_B_DB_CONN:-}
set -a
# shellcheck source-path=SCRIPTDIR source=nested.env
. "$here/nested.env"
set +a
dir=$(mktemp -d /tmp/trellis-nested.XXXXXX)
export NESTED_DIR="$dir"
read -r ROOT_PORT REGION_A_PORT REGION_B_PORT CLUSTER_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
export ROOT_PORT REGION_A_PORT REGION_B_PORT CLUSTER_PORT
export REGION_B_DB_TYPE=${user_db_type:-sqlite3}
if [ "$REGION_B_DB_TYPE" = sqlite3 ]; then
  export REGION_B_DB_CONN="$dir/region-b/data/datastore.sqlite3"
elif [ -n "$user_db_conn" ]; then
  export REGION_B_DB_CONN="$user_db_conn"
else
  echo "nested/run.sh: REGION_B_DB_TYPE=$REGION_B_DB_TYPE needs REGION_B_DB_CONN" >&2
  exit 2
fi
td=$TRUST_DOMAIN
uid=$(id -u)
mkdir -p "$dir/logs" "$dir/svid"

# ---- Process bookkeeping, clean-up, waiting ---------------------------------------------------
declare -A pids=() agent_ids=()
started=()
stopped_cleanly=0

# Stops what this script started, by PID, newest first.
stop_all() {
  local i name pid rc status=0
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    name=${started[i]}
    pid=${pids[$name]}
    if kill -0 "$pid" 2> /dev/null; then
      kill -TERM "$pid" 2> /dev/null || true
      rc=0
      wait "$pid" 2> /dev/null || rc=$?
      if [ $rc -ne 0 ]; then
        echo "   $name (PID $pid) exited with status $rc" >&2
        status=1
      fi
    fi
  done
  return $status
}

cleanup() {
  local rc=$?
  if [ "$keep_running" = 1 ] && [ $rc -eq 0 ]; then
    return
  fi
  if [ "$stopped_cleanly" = 0 ]; then
    stop_all || true
  fi
  if [ $rc -ne 0 ]; then
    echo "nested/run.sh: failed; logs kept in $dir/logs" >&2
    for log in "$dir"/logs/*.log; do
      [ -s "$log" ] || continue
      echo "--- $log (last lines)" >&2
      tail -n 15 "$log" >&2
    done
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
# Interrupted, hung up on, or writing to a closed pipe: still stop everything.
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

die() {
  echo "nested/run.sh: $*" >&2
  exit 1
}

step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
indent() { sed 's/^/      /'; }

# Milliseconds since an arbitrary origin, and the time since such a mark, as "1.23 s".
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
since() {
  local ms=$(($(now_ms) - $1))
  printf '%d.%02d s' $((ms / 1000)) $((ms % 1000 / 10))
}

sock() { echo "$dir/$1/api.sock"; }

# Starts a process in the background with its output in logs/NAME.log.
# Starts a process in the background, its output appended to logs/NAME.log; a restart keeps
# the process's place in the stop order.
launch() {
  local name=$1
  shift
  "$@" >> "$dir/logs/$name.log" 2>&1 &
  [ -n "${pids[$name]:-}" ] || started+=("$name")
  pids[$name]=$!
}

# Stops one process with SIGTERM and fails unless it exits with status 0.
stop_one() {
  local name=$1 rc=0
  kill -TERM "${pids[$name]}"
  wait "${pids[$name]}" || rc=$?
  [ $rc -eq 0 ] || die "$name exited with status $rc on SIGTERM"
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND until it succeeds, giving up at the deadline
# or as soon as NAME's process has exited.
wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout)) pid=${pids[$name]:-}
  until "$@" > /dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2> /dev/null; then
      die "$name exited while waiting for: $*"
    fi
    if [ $SECONDS -ge $deadline ]; then
      die "gave up after ${timeout} s waiting for $name: $*"
    fi
    sleep 0.1
  done
}

start_server() {
  local name=$1 conf=$2
  launch "$name" "$server_bin" run -config "$here/$conf" -expandEnv
}

# Waits for a server's healthcheck, then writes its trust bundle for the agents below it.
await_server() {
  local name=$1 timeout=$2 t0
  t0=$(now_ms)
  wait_for "$name" "$timeout" "$server_bin" healthcheck -socketPath "$(sock "$name")"
  "$server_bin" bundle show -format pem -socketPath "$(sock "$name")" > "$dir/$name/bundle.pem"
  say "$name is healthy after $(since "$t0") (PID ${pids[$name]}, log logs/$name.log)"
}

# start_agent NAME CONF SERVER [VAR=value ...]: a join token from SERVER, then the agent.
start_agent() {
  local name=$1 conf=$2 server=$3 token
  shift 3
  token=$("$server_bin" token generate -ttl 600 -socketPath "$(sock "$server")" |
    sed -n 's/^Token: *//p')
  [ -n "$token" ] || die "token generate on $server printed no token"
  agent_ids[$name]="spiffe://$td/spire/agent/join_token/$token"
  mkdir -p "$dir/$name"
  launch "$name" env AGENT_NAME="$name" "$@" \
    "$agent_bin" run -config "$here/$conf" -expandEnv -joinToken "$token"
  say "$name: attests to $server as ${agent_ids[$name]}"
}

await_agent() {
  local name=$1 t0
  t0=$(now_ms)
  wait_for "$name" 60 "$agent_bin" healthcheck -socketPath "$(sock "$name")"
  say "$name is healthy after $(since "$t0") (Workload API $(sock "$name"))"
}

# register SERVER PARENT_AGENT SPIFFE_ID [flags...]: an entry for this uid under that agent.
register() {
  local server=$1 parent=$2 id=$3
  shift 3
  say "on $server: entry create -parentID <$parent> -spiffeID $id -selector unix:uid:$uid${*:+ $*}"
  "$server_bin" entry create -socketPath "$(sock "$server")" -parentID "${agent_ids[$parent]}" \
    -spiffeID "$id" -selector "unix:uid:$uid" "$@" | grep -E 'SPIFFE ID|Parent ID|Downstream' |
    indent
}

for name in root region-a-agent-2 cluster-a1-agent-1; do
  path=$(sock "$name")
  [ ${#path} -lt 100 ] || die "socket path $path is too long for a Unix socket"
done
t_start=$(now_ms)
echo "Nested topology in $dir (trust domain $td, uid $uid)"
echo "Binaries: $bin_dir"

# ---- Root tier --------------------------------------------------------------------------------
step "1. Root tier: starting the root server (self-signed root CA, SQLite, port $ROOT_PORT)"
mkdir -p "$dir/root"
start_server root root-server.conf
await_server root 60

step "2. Root tier: one agent per region server (root-agent-a, root-agent-b)"
start_agent root-agent-a root-agent.conf root
start_agent root-agent-b root-agent.conf root
await_agent root-agent-a
await_agent root-agent-b

step "3. Root: registering each region server's identity with -downstream"
# The parent agent is what tells the two region servers apart: both run as this uid.
register root root-agent-a "spiffe://$td/region-a/server" -downstream
register root root-agent-b "spiffe://$td/region-b/server" -downstream

# ---- Regions ----------------------------------------------------------------------------------
db_b=SQLite
[ "$REGION_B_DB_TYPE" = sqlite3 ] || db_b=PostgreSQL
step "4. Regions: starting region-a (SQLite, port $REGION_A_PORT) and region-b ($db_b, port $REGION_B_PORT)"
say "each fetches its SVID from its root-tier agent, then has the root mint its intermediate CA"
mkdir -p "$dir/region-a" "$dir/region-b"
start_server region-a region-a-server.conf
start_server region-b region-b-server.conf
await_server region-a 90
await_server region-b 90

step "5. Regions: agents attested by their region server"
start_agent region-a-agent-1 region-agent.conf region-a REGION=region-a REGION_PORT="$REGION_A_PORT"
start_agent region-a-agent-2 region-agent.conf region-a REGION=region-a REGION_PORT="$REGION_A_PORT"
start_agent region-b-agent-1 region-agent.conf region-b REGION=region-b REGION_PORT="$REGION_B_PORT"
await_agent region-a-agent-1
await_agent region-a-agent-2
await_agent region-b-agent-1

# ---- Third tier -------------------------------------------------------------------------------
step "6. Third tier: cluster-a1 under region-a, next to region-a-agent-2"
register region-a region-a-agent-2 "spiffe://$td/region-a/cluster-a1/server" -downstream
mkdir -p "$dir/cluster-a1"
start_server cluster-a1 cluster-server.conf
await_server cluster-a1 90
start_agent cluster-a1-agent-1 cluster-agent.conf cluster-a1
await_agent cluster-a1-agent-1

# ---- Workloads --------------------------------------------------------------------------------
branches=(region-a region-b cluster-a1)
declare -A branch_agent=(
  [region-a]=region-a-agent-1 [region-b]=region-b-agent-1 [cluster-a1]=cluster-a1-agent-1
)
declare -A branch_server=([region-a]=region-a [region-b]=region-b [cluster-a1]=cluster-a1)
declare -A branch_id=(
  [region-a]="spiffe://$td/region-a/workload"
  [region-b]="spiffe://$td/region-b/workload"
  [cluster-a1]="spiffe://$td/region-a/cluster-a1/workload"
)

step "7. Registering a workload in each branch, on that branch's server"
for b in "${branches[@]}"; do
  register "${branch_server[$b]}" "${branch_agent[$b]}" "${branch_id[$b]}"
done

step "8. Fetching each workload's X509-SVID (trellis-agent api fetch x509 -write)"
for b in "${branches[@]}"; do
  t0=$(now_ms)
  # The entry reaches the agent on the server's push: retry until the SVID is served.
  wait_for "${branch_agent[$b]}" 60 "$agent_bin" api fetch x509 -silent -write "$dir/svid/$b" \
    -socketPath "$(sock "${branch_agent[$b]}")"
  say "$b: served by ${branch_agent[$b]} (waited $(since "$t0"))"
done

# Which server's CA issued a certificate: authority IDs are the CA's Subject Key Identifier.
declare -A authority_owner=()
for s in root region-a region-b cluster-a1; do
  while read -r id; do
    authority_owner[$id]=$s
  done < <("$server_bin" localauthority x509 show -socketPath "$(sock "$s")" |
    sed -n 's/^ *Authority ID: *//p')
done

key_id() { # key_id CERT EXT: the SKI or AKI as lowercase hex without colons
  openssl x509 -in "$1" -noout -ext "$2" 2> /dev/null | sed -n '2p' |
    sed 's/^ *//; s/^keyid://; s/://g' | tr 'A-F' 'a-f'
}
# Splits a PEM file into one file per certificate: PREFIX.0.pem, PREFIX.1.pem, ...
split_pem() {
  awk -v p="$2" '/BEGIN CERTIFICATE/ { f = p "." n++ ".pem" } f { print > f }' "$1"
}
# show_cert ROLE FILE: what a certificate is, its subject and issuer, and which tier signed it.
show_cert() {
  local role=$1 f=$2 subject issuer uri ski aki who by
  subject=$(openssl x509 -in "$f" -noout -subject -nameopt oneline | sed 's/^subject= *//')
  issuer=$(openssl x509 -in "$f" -noout -issuer -nameopt oneline | sed 's/^issuer= *//')
  uri=$(openssl x509 -in "$f" -noout -ext subjectAltName 2> /dev/null |
    grep -o 'URI:[^,]*' | sed 's/^URI://' || true)
  ski=$(key_id "$f" subjectKeyIdentifier)
  aki=$(key_id "$f" authorityKeyIdentifier)
  if [ "$role" = leaf ]; then
    who=$uri
  else
    who="the ${authority_owner[$ski]:-unknown} CA, authority ID $ski"
  fi
  if [ "$ski" = "$aki" ]; then
    by="self-signed"
  else
    by="signed by the ${authority_owner[$aki]:-unknown} CA"
    tiers+=("${authority_owner[$aki]:-unknown}")
  fi
  printf '      %-5s %s\n' "$role" "$who"
  printf '            subject "%s", issuer "%s": %s\n' "$subject" "$issuer" "$by"
}

step "9. The tiers each workload's chain passes through"
declare -A branch_tiers=()
for b in "${branches[@]}"; do
  d="$dir/svid/$b"
  rm -f "$d"/cert.*.pem "$d"/root.*.pem
  split_pem "$d/svid.0.pem" "$d/cert"
  split_pem "$d/bundle.0.pem" "$d/root"
  n=$(grep -c 'BEGIN CERTIFICATE' "$d/svid.0.pem")
  # The leaf is svid.0.pem's first certificate; the intermediates after it are the untrusted
  # part of the chain, the root comes from the bundle.
  : > "$d/intermediates.pem"
  for ((i = 1; i < n; i++)); do
    cat "$d/cert.$i.pem" >> "$d/intermediates.pem"
  done
  say "$b workload: $n certificate(s) in svid.0.pem, then the root from bundle.0.pem"
  tiers=()
  show_cert leaf "$d/cert.0.pem"
  for ((i = 1; i < n; i++)); do
    show_cert CA "$d/cert.$i.pem"
  done
  top_aki=$(key_id "$d/cert.$((n - 1)).pem" authorityKeyIdentifier)
  for r in "$d"/root.*.pem; do
    if [ "$(key_id "$r" subjectKeyIdentifier)" = "$top_aki" ]; then
      show_cert root "$r"
    fi
  done
  branch_tiers[$b]="workload$(printf ' -> %s' "${tiers[@]}")"
  say "tiers: ${branch_tiers[$b]}"
done

step "10. Every tier's bundle holds the same roots"
ref=""
for s in root region-a region-b cluster-a1; do
  "$server_bin" bundle show -format pem -socketPath "$(sock "$s")" > "$dir/$s/bundle.now.pem"
  sum=$(sha256sum < "$dir/$s/bundle.now.pem" | cut -c1-16)
  say "$(printf '%-11s %d root(s), sha256 %s' "$s:" "$(grep -c 'BEGIN CERT' "$dir/$s/bundle.now.pem")" "$sum")"
  [ -z "$ref" ] || [ "$sum" = "$ref" ] || die "$s's bundle differs from the root's"
  ref=$sum
done

step "11. X.509 across branches: openssl verify of one branch's chain against another's bundle"
status=0
for pair in region-a:region-b region-b:cluster-a1 cluster-a1:region-a; do
  from=${pair%%:*}
  to=${pair##*:}
  say "$from SVID against the bundle served to the $to workload:"
  untrusted=()
  [ -s "$dir/svid/$from/intermediates.pem" ] && untrusted=(-untrusted "$from/intermediates.pem")
  cmd=(openssl verify -CAfile "$to/bundle.0.pem" "${untrusted[@]}" "$from/cert.0.pem")
  echo "      ${cmd[*]}"
  if out=$(cd "$dir/svid" && "${cmd[@]}" 2>&1); then
    echo "      $out   (${branch_tiers[$from]})"
  else
    indent <<< "$out"
    status=1
  fi
done
[ $status -eq 0 ] || die "a chain did not verify across branches"

step "12. JWT keys: every server's key reaches every tier's bundle"
declare -A kid_owner=()
for s in root region-a region-b cluster-a1; do
  while read -r id; do
    kid_owner[$id]=$s
  done < <("$server_bin" localauthority jwt show -socketPath "$(sock "$s")" |
    sed -n 's/^ *Authority ID: *//p')
done
jwt_kids() {
  "$server_bin" bundle show -format spiffe -socketPath "$(sock "$1")" | python3 -c '
import json, sys
print(" ".join(sorted(k["kid"] for k in json.load(sys.stdin)["keys"] if k.get("use") == "jwt-svid")))'
}
same_jwt_keys() {
  local s first
  first=$(jwt_kids root) || return 1
  [ "$(wc -w <<< "$first")" -ge 4 ] || return 1
  for s in region-a region-b cluster-a1; do
    [ "$(jwt_kids "$s")" = "$first" ] || return 1
  done
}
t0=$(now_ms)
wait_for root 30 same_jwt_keys
say "all four tiers hold the same JWT keys (polled for $(since "$t0")):"
for kid in $(jwt_kids root); do
  say "   $kid${kid_owner[$kid]:+   (${kid_owner[$kid]})}"
done

step "13. JWT across branches: fetched from one branch's agent, validated by another's"
for pair in region-a:region-b region-b:cluster-a1 cluster-a1:region-a; do
  from=${pair%%:*}
  to=${pair##*:}
  aud="spiffe://$td/$to/service"
  token=$("$agent_bin" api fetch jwt -audience "$aud" -socketPath "$(sock "${branch_agent[$from]}")" |
    awk '/^token\(/ { getline; gsub(/[ \t]/, ""); print; exit }')
  [ -n "$token" ] || die "no JWT-SVID from ${branch_agent[$from]}"
  say "$from workload -> ${branch_agent[$to]}: validate jwt -audience $aud -svid ${token:0:24}..."
  "$agent_bin" api validate jwt -audience "$aud" -svid "$token" \
    -socketPath "$(sock "${branch_agent[$to]}")" | indent
  if "$agent_bin" api validate jwt -audience "spiffe://$td/elsewhere" -svid "$token" \
    -socketPath "$(sock "${branch_agent[$to]}")" > /dev/null 2>&1; then
    die "${branch_agent[$to]} accepted the token for an audience it was not minted for"
  fi
  say "   (and the same token is refused for another audience)"
done

# ---- The root goes down --------------------------------------------------------------------
step "14. The root goes down: the regions and the cluster keep issuing"
active_authority() { # the first Authority ID that show prints is the active one
  "$server_bin" localauthority x509 show -socketPath "$(sock "$1")" |
    sed -n 's/^ *Authority ID: *//p' | head -n 1
}
root_authority=$(active_authority root)
stop_one root
say "root server stopped (SIGTERM, exit status 0)"
# served AGENT ID: the caller is served an X509-SVID with that SPIFFE ID.
served() {
  "$agent_bin" api fetch x509 -socketPath "$(sock "$1")" | grep -q "SPIFFE ID:[[:space:]]*$2\$"
}
for b in region-b cluster-a1; do
  id="${branch_id[$b]%/workload}/during-outage"
  register "${branch_server[$b]}" "${branch_agent[$b]}" "$id"
  t0=$(now_ms)
  wait_for "${branch_agent[$b]}" 60 served "${branch_agent[$b]}" "$id"
  say "$id: served by ${branch_agent[$b]} with the root down (waited $(since "$t0"))"
done
d="$dir/svid/outage"
"$agent_bin" api fetch x509 -silent -write "$d" -socketPath "$(sock cluster-a1-agent-1)"
for f in "$d"/svid.*.pem; do
  if openssl x509 -in "$f" -noout -ext subjectAltName | grep -q 'during-outage'; then
    out=$(openssl verify -CAfile "$dir/svid/region-b/bundle.0.pem" -untrusted "$f" "$f" 2>&1) ||
      die "the SVID issued during the outage did not verify: $out"
    say "the cluster's new SVID verifies against the region-b workload's bundle: OK"
  fi
done

step "15. The root comes back on its persisted state"
t0=$(now_ms)
start_server root root-server.conf
await_server root 60
[ "$(active_authority root)" = "$root_authority" ] || die "the root came back with another CA"
say "root active X.509 authority: $root_authority, as before"

echo
say "everything above took $(since "$t_start") from the root's first start"

if [ "$keep_running" = 1 ]; then
  step "Topology left running (--keep-running)"
  echo "   Directory: $dir"
  for name in "${started[@]}"; do
    printf '   %-20s PID %-8s %s\n' "$name" "${pids[$name]}" "$(sock "$name")"
  done
  pid_list=""
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    pid_list+="${pids[${started[i]}]} "
  done
  cat << EOF

   Try:
     $agent_bin api fetch x509 -socketPath $(sock region-b-agent-1)
     $agent_bin api fetch jwt -audience demo -socketPath $(sock cluster-a1-agent-1)
     $server_bin localauthority x509 show -socketPath $(sock region-a)
     $server_bin bundle show -socketPath $(sock cluster-a1)
     $server_bin entry show -socketPath $(sock root)

   Stop it (newest first):
     kill -TERM $pid_list; rm -rf $dir
EOF
  exit 0
fi

step "16. Stopping every process (SIGTERM, newest first)"
stopped_cleanly=1
stop_all || die "a process did not stop cleanly"
say "all ${#started[@]} processes exited with status 0"
echo
echo "Done: root, two regions and a cluster ran nested; workloads in three branches verified"
echo "each other's X.509 and JWT SVIDs, and the tiers below kept issuing while the root was down."

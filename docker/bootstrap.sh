#!/bin/sh
# Bootstraps one tier of docker/compose.yaml from its server's admin socket, once:
#   bootstrap.sh root      the trust bundle, a join token for the root-tier agent, and the
#                          root's entry for the regional server (-downstream), parented to
#                          that agent
#   bootstrap.sh regional  a join token for the workload agent and an entry for a demo
#                          workload (uid 10002) under it
# Files go to /bootstrap (a volume the agents mount read-only). A tier already bootstrapped
# is left as it is: its agent restarts on the SVID it persisted.
set -eu

td=example.org
sock=/run/trellis/server/api.sock
out=/bootstrap

# Prints a single-use join token from this server.
new_token() {
  trellis-server token generate -ttl 600 -socketPath "$sock" | sed -n 's/^Token: *//p'
}

# publish FILE CONTENT: written under another name, then renamed, so an agent never reads a
# half-written file. Tokens are published after their entries are in place.
publish() {
  printf '%s\n' "$2" > "$out/$1.tmp"
  mv "$out/$1.tmp" "$out/$1"
}

case "${1:-}" in
  root)
    publish bundle.pem "$(trellis-server bundle show -format pem -socketPath "$sock")"
    if [ ! -s "$out/root-agent.token" ]; then
      token=$(new_token)
      [ -n "$token" ] || { echo "bootstrap.sh: no token from the root" >&2; exit 1; }
      # The regional server runs as uid 10001 in the root-tier agent's pid namespace.
      trellis-server entry create -socketPath "$sock" \
        -parentID "spiffe://$td/spire/agent/join_token/$token" \
        -spiffeID "spiffe://$td/regional/server" -selector unix:uid:10001 -downstream
      publish root-agent.token "$token"
    fi
    ;;
  regional)
    if [ ! -s "$out/workload-agent.token" ]; then
      token=$(new_token)
      [ -n "$token" ] || { echo "bootstrap.sh: no token from the regional server" >&2; exit 1; }
      trellis-server entry create -socketPath "$sock" \
        -parentID "spiffe://$td/spire/agent/join_token/$token" \
        -spiffeID "spiffe://$td/regional/workload" -selector unix:uid:10002
      publish workload-agent.token "$token"
    fi
    ;;
  *)
    echo "usage: bootstrap.sh root|regional" >&2
    exit 2
    ;;
esac

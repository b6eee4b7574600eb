#!/bin/sh
# Starts trellis-agent with the join token bootstrap.sh left for it:
#   agent-entrypoint.sh TOKEN_FILE CONFIG
# The token is used once; on later starts the agent resumes on the SVID it persisted in
# its data_dir and ignores it.
set -eu
token=$(cat "$1")
exec /usr/local/bin/trellis-agent run -config "$2" -joinToken "$token"

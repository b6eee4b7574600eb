#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster and always removes the cluster.
#
#   scripts/with-postgres.sh ctest -L postgres --output-on-failure
#
# Exports TRELLIS_TEST_POSTGRES_DSN (libpq connection string over TCP on 127.0.0.1),
# TRELLIS_TEST_PG_CTL, TRELLIS_TEST_PGDATA and TRELLIS_TEST_PG_LOG so tests can restart the
# server. initdb refuses to run as root, so as root the cluster belongs to `postgres`.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command...>" >&2
  exit 2
fi

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl psql; do
  if [ ! -x "$PGBIN/$tool" ]; then
    echo "with-postgres: $PGBIN/$tool not found (set PGBIN)" >&2
    exit 1
  fi
done

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/trellis-pg.XXXXXX")
pgdata="$workdir/data"
sockdir="$workdir/sock"
logfile="$workdir/postgres.log"
mkdir -p "$sockdir"
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres: "$workdir"
fi
chmod 0700 "$workdir"

cleanup() {
  as_owner "$PGBIN/pg_ctl" -D "$pgdata" stop -m immediate -w >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port: bind port 0 and read what the kernel picked.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

as_owner "$PGBIN/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --no-sync >"$workdir/initdb.log" 2>&1 || {
  cat "$workdir/initdb.log" >&2
  exit 1
}
# Settings go in the config file (not pg_ctl -o) so a test's own stop/start keeps them.
cat >>"$pgdata/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 200
EOF
as_owner "$PGBIN/pg_ctl" -D "$pgdata" -l "$logfile" -w -t 60 start >/dev/null || {
  cat "$logfile" >&2
  exit 1
}
as_owner "$PGBIN/psql" -h "$sockdir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE DATABASE trellis_test" >/dev/null

export TRELLIS_TEST_POSTGRES_DSN="host=127.0.0.1 port=$port user=postgres dbname=trellis_test"
export TRELLIS_TEST_PG_CTL="$PGBIN/pg_ctl"
export TRELLIS_TEST_PGDATA="$pgdata"
export TRELLIS_TEST_PG_LOG="$logfile"

set +e
"$@"
status=$?
set -e
exit "$status"

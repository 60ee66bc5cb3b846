#!/bin/bash
# PID 1 of a PostgreSQL member of docker-compose.yml (runs as postgres).
#
# First start: the member named by SWITCHYARD_PG_MEMBER makes its data
# directory: without SWITCHYARD_PG_UPSTREAM it is the primary (initdb,
# compose/postgres/postgresql.conf and pg_hba.conf); with it, a streaming
# standby cloned from that primary (pg_basebackup) that names itself to it
# (application_name) as the lab's standbys do.
#
# Every start: postgres is started as configured, and this script stays in the
# foreground (printing the server log) whether or not postgres runs: the
# hooks stop, reconfigure and start the server in place (pgctl.sh), which a
# server running as PID 1 would not allow. A container stop is a fast shutdown.
set -euo pipefail
: "${PGDATA:?PGDATA is not set}"
: "${SWITCHYARD_PG_MEMBER:?SWITCHYARD_PG_MEMBER is not set}"
here="$(cd "$(dirname "$0")" && pwd)"
log="$(dirname "$PGDATA")/log"
upstream="${SWITCHYARD_PG_UPSTREAM:-}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ -z "$upstream" ]; then
    echo "supervise.sh: $SWITCHYARD_PG_MEMBER: initdb (primary)"
    initdb -D "$PGDATA" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null
    cat "$here/postgresql.conf" >> "$PGDATA/postgresql.conf"
    cp "$here/pg_hba.conf" "$PGDATA/pg_hba.conf"
  else
    echo "supervise.sh: $SWITCHYARD_PG_MEMBER: waiting for $upstream:5432 to clone it"
    i=0
    until pg_isready -q -h "$upstream" -p 5432; do
      i=$((i+1)); [ $i -gt 300 ] && { echo "supervise.sh: $upstream:5432 never accepted connections" >&2; exit 1; }
      sleep 1
    done
    # postgresql.conf and pg_hba.conf come with the copy.
    pg_basebackup -h "$upstream" -p 5432 -U postgres -D "$PGDATA" -X stream -c fast
    host="$upstream" "$here/pgctl.sh" set-upstream "$upstream" 5432
  fi
  # Per member, after the copy: the last setting wins.
  echo "cluster_name = '$SWITCHYARD_PG_MEMBER'" >> "$PGDATA/postgresql.conf"
fi

touch "$log"
# The log follower and the sleeper go too: outside a container (where PID 1's
# exit ends every process) nothing else would end them.
trap '"$here/pgctl.sh" stop; kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
"$here/pgctl.sh" start
tail -n +1 -F "$log" &
# `wait` returns when a trapped signal arrives; the trap ends the script.
while :; do sleep 3600 & wait $! || true; done

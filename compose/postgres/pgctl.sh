#!/bin/bash
# Host commands for one PostgreSQL member of docker-compose.yml, run inside its
# container as the postgres user:
#
#   docker compose exec -T MEMBER /compose/postgres/pgctl.sh COMMAND [HOST PORT]
#
#   stop                     fast shutdown (the container stays up)
#   start                    start as configured (primary or standby)
#   start-standby [HOST PORT] stop, follow HOST:PORT (none: recovery without
#                            an upstream, a fenced former primary), start
#   rewind HOST PORT         stop, pg_rewind onto HOST:PORT (pg_basebackup if
#                            that fails, the old data directory moved aside)
#   controldata              pg_controldata of the data directory (LC_ALL=C),
#                            then `standby.signal: present|absent`: the
#                            deferred fence reads a stopped primary's final
#                            position from it (hooks.extra.controldata)
#   stop-controldata         stop, then what controldata prints, in one
#                            process (hooks.extra.stop_controldata)
#   kill                     SIGKILL the postmaster (a crash, for tests)
#   set-upstream HOST PORT   write standby.signal and primary_conninfo only
#
# The same commands, with the same meaning, as the lab's pgctl.sh
# (tests/lab/src/postgres.rs): every command is idempotent, so the
# controller's retries and a resumed execution are safe. The server runs under
# supervise.sh (PID 1), so stopping it does not stop the container and a
# stopped member can be reconfigured in place; `docker compose stop`/`start`
# stop and start the whole container instead (start: as configured).
set -euo pipefail
: "${PGDATA:?PGDATA is not set}"
: "${SWITCHYARD_PG_MEMBER:?SWITCHYARD_PG_MEMBER is not set}"
cmd="${1:-}"; host="${2:-}"; port="${3:-}"
# The log and the files kept across a rewind live beside the data directory,
# on the same volume.
keep="$(dirname "$PGDATA")"
# The name this member gives the primary (application_name, which is how
# pg_stat_replication and Switchyard know it): the service's, unless a test
# harness that names members otherwise wrote $keep/application_name
# (tests/lab's compose backing does).
member="$SWITCHYARD_PG_MEMBER"
[ -s "$keep/application_name" ] && member="$(cat "$keep/application_name")"
log="$keep/log"

if [ "$(id -u)" = 0 ]; then
  echo "pgctl.sh runs as the postgres user (docker compose exec uses the container's user)" >&2
  exit 2
fi

pid_of() { [ -f "$PGDATA/postmaster.pid" ] && head -n1 "$PGDATA/postmaster.pid" || true; }
alive() { p=$(pid_of); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

stop() {
  p=$(pid_of)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    # SIGINT is a fast shutdown (what pg_ctl -m fast sends).
    kill -INT "$p" 2>/dev/null || true
    i=0
    while kill -0 "$p" 2>/dev/null; do
      i=$((i+1)); [ $i -gt 1200 ] && { echo "$member did not stop within 120 s" >&2; exit 1; }
      sleep 0.1
    done
  fi
  return 0
}

start() {
  alive || pg_ctl -D "$PGDATA" -l "$log" -W start >/dev/null
}

set_upstream() {
  : > "$PGDATA/standby.signal"
  tmp="$PGDATA/postgresql.auto.conf.tmp"
  grep -v '^primary_conninfo' "$PGDATA/postgresql.auto.conf" > "$tmp" || true
  if [ -n "$host" ]; then
    # application_name is how the primary's pg_stat_replication names this member.
    echo "primary_conninfo = 'host=$host port=${port:-5432} user=postgres application_name=$member'" >> "$tmp"
  fi
  mv "$tmp" "$PGDATA/postgresql.auto.conf"
}

controldata() {
  LC_ALL=C pg_controldata -D "$PGDATA"
  if [ -f "$PGDATA/standby.signal" ]; then echo "standby.signal: present"; else echo "standby.signal: absent"; fi
}

case "$cmd" in
  stop) stop ;;
  controldata) controldata ;;
  stop-controldata) stop; controldata ;;
  start) start ;;
  kill)
    p=$(pid_of)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill -KILL "$p"
      while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
    fi
    ;;
  set-upstream) set_upstream ;;
  start-standby) stop; set_upstream; start ;;
  rewind)
    [ -n "$host" ] || { echo "rewind needs the new primary's HOST PORT" >&2; exit 2; }
    stop
    # pg_rewind copies the source's configuration files; keep this member's.
    # The copies are taken only when no earlier rewind was left half done, so
    # a retry never saves what a failed pg_rewind left behind.
    if [ ! -f "$keep/rewind.in-progress" ]; then
      cp -p "$PGDATA/postgresql.conf" "$keep/postgresql.conf.keep"
      cp -p "$PGDATA/postgresql.auto.conf" "$keep/postgresql.auto.conf.keep"
      : > "$keep/rewind.in-progress"
    fi
    src="host=$host port=${port:-5432} user=postgres"
    # Nothing is touched while the new primary cannot be reached: the
    # fallback below replaces the data directory.
    pg_isready -q -h "$host" -p "${port:-5432}" || { echo "source $host:${port:-5432} is not accepting connections" >&2; exit 1; }
    if ! pg_rewind -D "$PGDATA" --source-server="$src dbname=postgres" >>"$log" 2>&1; then
      # The old directory is moved aside, never deleted: it may hold the only
      # copy of transactions the new primary lacks.
      aside="$keep/data.before-clone.$(date -u +%Y%m%dT%H%M%SZ).$$"
      mv "$PGDATA" "$aside"
      echo "pg_rewind failed; moved the data directory aside to $aside; cloning $host:${port:-5432} with pg_basebackup" | tee -a "$log" >&2
      mkdir -m 700 "$PGDATA"
      pg_basebackup -D "$PGDATA" -d "$src" -X stream -c fast >>"$log" 2>&1
    fi
    cp -p "$keep/postgresql.conf.keep" "$PGDATA/postgresql.conf"
    cp -p "$keep/postgresql.auto.conf.keep" "$PGDATA/postgresql.auto.conf"
    rm -f "$keep/rewind.in-progress"
    ;;
  *) echo "usage: pgctl.sh stop|start|start-standby|rewind|controldata|stop-controldata|kill|set-upstream [HOST PORT]" >&2; exit 2 ;;
esac

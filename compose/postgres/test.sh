#!/bin/bash
# Runs the PostgreSQL members' container scripts (supervise.sh, pgctl.sh)
# with real PostgreSQL from Debian, without Docker: each member in its own
# network and mount namespace (standing in for its container: its own
# addresses, its own /var/lib/postgresql and /var/run/postgresql, compose/
# at /compose), on a bridge, at its compose address. `ex MEMBER CMD` stands in
# for `docker compose exec -T MEMBER CMD` (nsenter, as the postgres user).
#
# Checks: a primary and two standbys cloned by supervise.sh streaming under
# their names; with SWITCHYARD_BIN, `switchyard drill --to west` (a planned
# switchover and the failback) through the topology's own hooks, the
# deferred fence's `controldata`/`stop_controldata` among them; a planned
# switchover done by hand with the hooks' commands
# (stop, promote, start-standby, rewind) losing nothing; a fenced start; a
# kill and a restart; the name file the lab's compose backing writes; a
# container stop (SIGTERM to PID 1) as a clean fast shutdown.
#
# Needs root (namespaces) and Debian's postgresql package; scripts/test.sh
# runs it when it is root. Usage: [SWITCHYARD_BIN=target/debug/switchyard] compose/postgres/test.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SWITCHYARD_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
BASE=$(mktemp -d /tmp/switchyard-pgns.XXXX); chmod 755 "$BASE"
# Unique per run: other runs (other worktrees) may share the machine.
BR=sy$$
NS=sy$$
# Their compose home addresses; one /16 on one bridge stands in for the
# three region networks (every member is on all three in docker-compose.yml).
declare -A IP=([pg-east-1]=172.30.1.11 [pg-west-1]=172.30.2.12 [pg-south-1]=172.30.3.13)
cleanup() {
  for m in pg-east-1 pg-west-1 pg-south-1; do
    [ -f "$BASE/$m.pid" ] && kill "$(cat "$BASE/$m.pid")" 2>/dev/null || true
  done
  sleep 2
  for m in pg-east-1 pg-west-1 pg-south-1 co; do ip netns del "$NS-$m" 2>/dev/null || true; done
  ip link del $BR 2>/dev/null || true
  rm -rf "$BASE"
}
trap cleanup EXIT
ip link add $BR type bridge; ip link set $BR up
i=0
for m in pg-east-1 pg-west-1 pg-south-1; do
  i=$((i+1)); ns=$NS-$m
  ip netns add $ns
  ip link add $NS-v$i type veth peer name eth0 netns $ns
  ip link set $NS-v$i master $BR up
  ip -n $ns addr add ${IP[$m]}/16 dev eth0
  ip -n $ns link set eth0 up; ip -n $ns link set lo up
  mkdir -p "$BASE/$m/vol" "$BASE/$m/run"; chown postgres:postgres "$BASE/$m/vol" "$BASE/$m/run"
done
# "docker compose up": PID 1 of each container, as postgres.
start_member() { # member [upstream]
  local m=$1 up=${2:-}
  ip netns exec $NS-$m unshare -m --propagation private sh -c "
    mkdir -p /var/lib/postgresql /var/run/postgresql
    mount --bind '$BASE/$m/vol' /var/lib/postgresql
    mount --bind '$BASE/$m/run' /var/run/postgresql
    mkdir -p /compose; mount --bind '$REPO/compose' /compose
    exec setpriv --reuid=postgres --regid=postgres --init-groups env PATH=$BIN:/usr/bin:/bin HOME=/var/lib/postgresql \
      PGDATA=/var/lib/postgresql/data/data SWITCHYARD_PG_MEMBER=$m SWITCHYARD_PG_UPSTREAM=$up /compose/postgres/supervise.sh" \
    > "$BASE/$m.out" 2>&1 &
  echo $! > "$BASE/$m.pid"
}
# "docker compose exec -T MEMBER ...": in that member's namespaces, as postgres.
ex() {
  local m=$1; shift
  # $BASE/$m.pid is the member's PID 1: setpriv exec'd into supervise.sh.
  nsenter -t "$(cat "$BASE/$m.pid")" -m -n setpriv --reuid=postgres --regid=postgres --init-groups \
    env PATH=$BIN:/usr/bin:/bin HOME=/var/lib/postgresql PGDATA=/var/lib/postgresql/data/data SWITCHYARD_PG_MEMBER=$m "$@"
}
sql() { local m=$1; shift; ex "$m" psql -qAtX -h /var/run/postgresql -U postgres -c "$*"; }
wait_ready() { local m=$1; for _ in $(seq 1 300); do ex "$m" pg_isready -q -h 127.0.0.1 && return 0; sleep 0.2; done; echo "$m not ready"; cat "$BASE/$m.out"; return 1; }
check() { if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: got '$2', want '$3'"; exit 1; fi; }

start_member pg-east-1
sleep 1; wait_ready pg-east-1
start_member pg-west-1 172.30.1.11
start_member pg-south-1 172.30.1.11
wait_ready pg-west-1; wait_ready pg-south-1
for _ in $(seq 1 100); do n=$(sql pg-east-1 "SELECT count(*) FROM pg_stat_replication WHERE state='streaming'"); [ "$n" = 2 ] && break; sleep 0.2; done
check "standbys streaming to pg-east-1" "$(sql pg-east-1 "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state='streaming'")" "pg-south-1,pg-west-1"
check "pg-west-1 in recovery" "$(sql pg-west-1 'SELECT pg_is_in_recovery()')" "t"
check "cluster_name" "$(sql pg-south-1 'SHOW cluster_name')" "pg-south-1"
sql pg-east-1 "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"

# The topology's own hooks, driven by the real coordinator: `switchyard
# drill --to west` on the `pg` store of topologies/examples/compose.toml,
# from a namespace of its own at switchyard-east's address, with a `docker`
# on PATH that runs `docker compose exec -T MEMBER CMD...` as `ex` does.
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  ns=$NS-co
  ip netns add $ns
  ip link add $NS-v9 type veth peer name eth0 netns $ns
  ip link set $NS-v9 master $BR up
  ip -n $ns addr add 172.30.1.71/16 dev eth0
  ip -n $ns link set eth0 up; ip -n $ns link set lo up
  mkdir -p "$BASE/bin" "$BASE/state"
  cat > "$BASE/bin/docker" <<SHIM
#!/bin/sh
# Stands in for: docker compose exec -T MEMBER CMD...
[ "\$1 \$2 \$3" = "compose exec -T" ] || { echo "this docker only runs: compose exec -T MEMBER CMD..." >&2; exit 64; }
m=\$4; shift 4
exec nsenter -t "\$(cat "$BASE/\$m.pid")" -m -n setpriv --reuid=postgres --regid=postgres --init-groups \\
  env PATH=$BIN:/usr/bin:/bin HOME=/var/lib/postgresql PGDATA=/var/lib/postgresql/data/data SWITCHYARD_PG_MEMBER=\$m "\$@"
SHIM
  chmod +x "$BASE/bin/docker"
  # The pg store alone: the other stores have no servers here.
  sed -n '1,/^# MongoDB replica set/p' "$REPO/topologies/examples/compose.toml" | sed '$d' > "$BASE/pg.toml"
  if ! ip netns exec $ns env PATH="$BASE/bin:$PATH" "$SWITCHYARD_BIN" --topology "$BASE/pg.toml" \
      --state-dir "$BASE/state" drill --to west --yes --output json > "$BASE/drill.json" 2> "$BASE/drill.err"; then
    echo "FAIL switchyard drill --to west:"; tail -n 20 "$BASE/drill.err"; tail -n 5 "$BASE/drill.json"
    ip netns exec $ns "$SWITCHYARD_BIN" --topology "$BASE/pg.toml" --state-dir "$BASE/state" state; exit 1
  fi
  check "drill: back in east" "$(sql pg-east-1 'SELECT pg_is_in_recovery()')" "f"
  # The timeline from the current WAL file's name (the control file's
  # checkpoint may not have caught up with a fresh promotion).
  check "drill: two promotions (timeline 3)" "$(sql pg-east-1 "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")" "00000003"
  for _ in $(seq 1 150); do s=$(sql pg-east-1 "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state='streaming'"); [ "$s" = "pg-south-1,pg-west-1" ] && break; sleep 0.2; done
  check "drill: both standbys follow east again" "$s" "pg-south-1,pg-west-1"
  check "drill: the row written before it is there" "$(sql pg-east-1 'SELECT count(*) FROM t')" "1"
  # compose.toml's hooks have extra.controldata and stop_controldata: the
  # fence was the deferred one (old primary stopped with standby.signal, its
  # final position read through `pgctl.sh stop-controldata`), both ways.
  # Each execution's journal (in the state directory) has the fence's outcome.
  check "drill: two deferred fences (journals with the note)" \
    "$(grep -rl 'stopped with standby.signal (it restarts in recovery); final position [0-9A-F]*/[0-9A-F]* on timeline [0-9]* (just past its shutdown checkpoint, from its control file)' "$BASE/state" | wc -l | tr -d ' ')" "2"
else
  echo "skip switchyard drill through the topology's hooks: set SWITCHYARD_BIN to the switchyard binary"
fi
# Planned switchover by hand, through the hooks' commands: stop east, promote west, re-point south, rewind+follow east.
ex pg-east-1 /compose/postgres/pgctl.sh stop
ex pg-east-1 /compose/postgres/pgctl.sh stop   # idempotent
check "east stopped, container (PID 1) alive" "$(kill -0 "$(cat "$BASE/pg-east-1.pid")" && echo alive)" "alive"
# hooks.extra.controldata: pg_controldata of the stopped member, then the
# standby.signal line, as the controller parses them (LC_ALL=C).
cd_out=$(ex pg-east-1 /compose/postgres/pgctl.sh controldata)
check "controldata: clean shutdown" "$(echo "$cd_out" | sed -n 's/^Database cluster state: *//p')" "shut down"
check "controldata: standby.signal line" "$(echo "$cd_out" | tail -n 1)" "standby.signal: absent"
check "controldata: checkpoint location" "$(echo "$cd_out" | grep -c '^Latest checkpoint location: *[0-9A-F]*/[0-9A-F]*$')" "1"
sql pg-west-1 "SELECT pg_promote(true, 60)" >/dev/null
check "west promoted" "$(sql pg-west-1 'SELECT pg_is_in_recovery()')" "f"
sql pg-west-1 "INSERT INTO t VALUES (2); CHECKPOINT"
ex pg-south-1 /compose/postgres/pgctl.sh start-standby 172.30.2.12 5432
wait_ready pg-south-1
ex pg-east-1 /compose/postgres/pgctl.sh rewind 172.30.2.12 5432
ex pg-east-1 /compose/postgres/pgctl.sh start-standby 172.30.2.12 5432
wait_ready pg-east-1
for _ in $(seq 1 150); do n=$(sql pg-west-1 "SELECT count(*) FROM pg_stat_replication WHERE state='streaming'"); [ "$n" = 2 ] && break; sleep 0.2; done
check "both follow pg-west-1" "$(sql pg-west-1 "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state='streaming'")" "pg-east-1,pg-south-1"
for _ in $(seq 1 100); do [ "$(sql pg-east-1 'SELECT count(*) FROM t')" = 2 ] && break; sleep 0.2; done
check "rewound east replays west's write" "$(sql pg-east-1 'SELECT count(*) FROM t')" "2"
# Fenced start: recovery without an upstream.
ex pg-south-1 /compose/postgres/pgctl.sh start-standby
wait_ready pg-south-1
check "fenced south: in recovery" "$(sql pg-south-1 'SELECT pg_is_in_recovery()')" "t"
check "fenced south: no upstream" "$(sql pg-south-1 "SELECT count(*) FROM pg_stat_wal_receiver")" "0"
# hooks.extra.stop_controldata on a running standby: the stop, then what
# controldata prints (a standby shut down in recovery).
cd_out=$(ex pg-south-1 /compose/postgres/pgctl.sh stop-controldata)
check "stop-controldata: stopped" "$(ex pg-south-1 pg_isready -q -h 127.0.0.1 && echo up || echo down)" "down"
check "stop-controldata: shut down in recovery" "$(echo "$cd_out" | sed -n 's/^Database cluster state: *//p')" "shut down in recovery"
check "stop-controldata: standby.signal line" "$(echo "$cd_out" | tail -n 1)" "standby.signal: present"
ex pg-south-1 /compose/postgres/pgctl.sh start-standby
wait_ready pg-south-1
# A crash (the compose backing's kill), then start as configured.
ex pg-south-1 /compose/postgres/pgctl.sh kill
check "killed south refuses connections" "$(ex pg-south-1 pg_isready -q -h 127.0.0.1 && echo up || echo down)" "down"
ex pg-south-1 /compose/postgres/pgctl.sh start-standby 172.30.2.12 5432
wait_ready pg-south-1
for _ in $(seq 1 150); do n=$(sql pg-west-1 "SELECT count(*) FROM pg_stat_replication WHERE state='streaming'"); [ "$n" = 2 ] && break; sleep 0.2; done
check "south streams again" "$n" "2"
# The harness's name file (tests/lab's compose backing names members orders-*).
ex pg-south-1 sh -c 'echo orders-south-1 > /var/lib/postgresql/data/application_name'
ex pg-south-1 /compose/postgres/pgctl.sh start-standby 172.30.2.12 5432
wait_ready pg-south-1
for _ in $(seq 1 150); do s=$(sql pg-west-1 "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state='streaming'"); [ "$s" = "orders-south-1,pg-east-1" ] && break; sleep 0.2; done
check "application_name from the name file" "$s" "orders-south-1,pg-east-1"
# Container stop: SIGTERM to PID 1 is a fast shutdown.
kill -TERM "$(cat "$BASE/pg-east-1.pid")"
for _ in $(seq 1 100); do kill -0 "$(cat "$BASE/pg-east-1.pid")" 2>/dev/null || break; sleep 0.1; done
check "SIGTERM: PID 1 exits" "$(kill -0 "$(cat "$BASE/pg-east-1.pid")" 2>/dev/null && echo running || echo exited)" "exited"
check "SIGTERM: postmaster gone, clean shutdown" "$( [ -f "$BASE/pg-east-1/vol/data/data/postmaster.pid" ] && echo left || echo removed)" "removed"
echo "all checks passed"

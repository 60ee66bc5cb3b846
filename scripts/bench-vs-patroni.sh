#!/usr/bin/env bash
# Switchyard and Patroni side by side, on the same shape: three PostgreSQL
# members, one per region (east, west, south), on loopback; the same writer
# (an insert every 10 ms to whichever member is writable) against each; the
# switchover issued the way an orchestrator would:
#   switchyard failover --to <region> --yes         (release build; the CLI path)
#   POST /v1/executions {"to":"<region>"}           (a running `switchyard serve`)
#   patronictl switchover --candidate <member> --force
# Each Switchyard path has a lab cluster of its own (their fencing tokens
# come from different state directories). N alternating switchovers per
# tool (east → west → east ...), interleaved. Prints one table with the
# three and each Switchyard path's ratios to Patroni. See docs/performance.md.
#
#   scripts/bench-vs-patroni.sh            # 5 rounds
#   ROUNDS=10 scripts/bench-vs-patroni.sh
#
# A benchmark, not a test: CI does not run it. Needs root or sudo for
# apt-get (patroni, python3-etcd, etcd-server); everything else lives in a
# temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_missing
ROUNDS=${ROUNDS:-5}

need=()
command -v patroni >/dev/null || need+=(patroni)
/usr/bin/python3 -c 'import etcd' 2>/dev/null || need+=(python3-etcd)
command -v etcd >/dev/null || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's etcd-server package starts a system etcd on 2379; ours uses free ports.

echo "==> building switchyard, the lab (release) and the bench"
cargo build --release --quiet -p switchyard -p switchyard-lab
bin="${CARGO_TARGET_DIR:-target}/release"
bin=$(cd "$bin" && pwd)
cargo bench --quiet -p switchyard-postgres --bench vs_patroni --no-run

pgbin=$(pg_bindir)
work=$(mktemp -d /tmp/switchyard-vs-patroni.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Patroni stops its postgres on SIGTERM; anything left is stopped here.
  for d in "$work"/patroni/*/data; do
    [ -f "$d/postmaster.pid" ] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# PostgreSQL, Patroni and etcd refuse root or should not run as it. A
# prefix, not a function: env and setpriv exec, so `$!` of a backgrounded
# "${as_pg[@]}" command is the server's own pid, which cleanup stops.
if [ "$(id -u)" = 0 ]; then
  as_pg=(env HOME="$work" setpriv --reuid=postgres --regid=postgres --init-groups)
else
  as_pg=(env)
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # file pattern pid what
  for _ in $(seq 1 1200); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { tail -n 30 "$1" "${1%.out}.err" >&2 2>/dev/null; echo "$4 failed to start" >&2; exit 1; }
    sleep 0.1
  done
  echo "$4 did not become ready" >&2; exit 1
}

for lab in sy sy-server; do
  echo "==> Switchyard: lab cluster in $work/$lab"
  mkdir -p "$work/$lab"
  "$bin/switchyard-lab" postgres up --dir "$work/$lab" --regions east,west,south --deferred-fence \
    >"$work/$lab/lab.out" 2>"$work/$lab/lab.err" &
  pids+=($!)
  wait_for "$work/$lab/lab.out" '"ready":true' "${pids[-1]}" "the lab"
done

echo "==> Switchyard: switchyard serve on the second cluster"
srv="$bin/switchyard --topology $work/sy-server/topology.toml --state-dir $work/sy-server/state"
token=$($srv token create --role operator --tokens-file "$work/sy-server/tokens" 2>/dev/null)
$srv serve --listen 127.0.0.1:0 --backend file --node bench --tokens-file "$work/sy-server/tokens" \
  >"$work/sy-server/serve.out" 2>"$work/sy-server/serve.err" &
pids+=($!)
wait_for "$work/sy-server/serve.out" '"listening"' "${pids[-1]}" "switchyard serve"
srv_addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$work/sy-server/serve.out")

echo "==> Patroni: etcd and three members in $work/patroni"
mkdir -p "$work/patroni"
chown postgres: "$work/patroni" 2>/dev/null || true
etcd_port=$(free_port); etcd_peer=$(free_port)
"${as_pg[@]}" etcd --name bench --data-dir "$work/patroni/etcd" --enable-v2=true \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "bench=http://127.0.0.1:$etcd_peer" \
  >"$work/patroni/etcd.out" 2>&1 &
pids+=($!)
wait_for "$work/patroni/etcd.out" 'ready to serve client requests' "${pids[-1]}" "etcd"

declare -A pport
members_json=()
for region in east west south; do
  name="pg-$region"
  dir="$work/patroni/$name"
  mkdir -p "$dir"
  pport[$region]=$(free_port)
  api=$(free_port)
  # Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10); the server
  # settings are the lab's, so both tools switch the same PostgreSQL.
  cat >"$dir/patroni.yml" <<EOF
scope: bench
name: $name
restapi:
  listen: 127.0.0.1:$api
  connect_address: 127.0.0.1:$api
etcd:
  host: 127.0.0.1:$etcd_port
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 8388608
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        max_wal_senders: 16
        max_replication_slots: 16
        hot_standby: "on"
        wal_log_hints: "on"
        wal_keep_size: 512MB
        fsync: "off"
        shared_buffers: 16MB
        max_connections: 60
        wal_retrieve_retry_interval: 100ms
        wal_receiver_status_interval: 1s
  initdb:
    - encoding: UTF8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${pport[$region]}
  connect_address: 127.0.0.1:${pport[$region]}
  data_dir: $dir/data
  bin_dir: $pgbin
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  parameters:
    unix_socket_directories: '$dir'
EOF
  chown -R postgres: "$dir" 2>/dev/null || true
  "${as_pg[@]}" patroni "$dir/patroni.yml" >"$dir/patroni.log" 2>&1 &
  pids+=($!)
  members_json+=("{\"name\":\"$name\",\"region\":\"$region\",\"port\":${pport[$region]}}")
  if [ "$region" = east ]; then
    # The first member bootstraps and becomes the leader; the others clone it.
    wait_for "$dir/patroni.log" 'no action. I am (pg-east), the leader' "${pids[-1]}" "Patroni (pg-east)"
  fi
done
cfg="$work/patroni/pg-east/patroni.yml"

lab_members() {
  python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
print(",".join(json.dumps({"name":m["name"],"region":m["region"],"port":m["port"]}) for m in d["members"]))
' "$1"
}
sy_members=$(lab_members "$work/sy/lab.out")
srv_members=$(lab_members "$work/sy-server/lab.out")
sy="$bin/switchyard --topology $work/sy/topology.toml --state-dir $work/sy/state"
json_argv() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@"; }
cat >"$work/spec.json" <<EOF
{"rounds": $ROUNDS,
 "tools": [
  {"name": "Switchyard CLI", "members": [$sy_members],
   "command": {"west": $(json_argv $sy failover --to west --yes),
               "east": $(json_argv $sy failover --to east --yes)}},
  {"name": "Switchyard server", "members": [$srv_members],
   "request": {"addr": "$srv_addr", "token": "$token",
               "west": "{\"to\":\"west\"}", "east": "{\"to\":\"east\"}"}},
  {"name": "Patroni", "members": [$(IFS=,; echo "${members_json[*]}")],
   "command": {"west": $(json_argv as_pg_patronictl -c "$cfg" switchover --candidate pg-west --force),
               "east": $(json_argv as_pg_patronictl -c "$cfg" switchover --candidate pg-east --force)}}
 ]}
EOF
# patronictl as the postgres user, like the members (an absolute path: the
# bench runs the argv directly).
cat >"$work/as_pg_patronictl" <<EOF
#!/bin/sh
if [ "\$(id -u)" = 0 ]; then exec env HOME="$work" setpriv --reuid=postgres --regid=postgres --init-groups patronictl "\$@"; fi
exec patronictl "\$@"
EOF
chmod 755 "$work/as_pg_patronictl"
sed -i "s|\"as_pg_patronictl\"|\"$work/as_pg_patronictl\"|g" "$work/spec.json"

echo "==> load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "==> $ROUNDS alternating switchovers per tool"
VS_PATRONI_SPEC="$work/spec.json" cargo bench --quiet -p switchyard-postgres --bench vs_patroni
echo "==> load average: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, start the lab
# (real PostgreSQL streaming replication, the MongoDB replica-set simulator and
# the Cosmos DB ARM + data-plane simulator and the EventStoreDB cluster
# simulator over three regions, MongoDB, Cosmos DB and EventStoreDB depending
# on PostgreSQL, and real Redis with one Sentinel per region), lint its topology,
# show the state, run a failover drill to another region and back, print the
# report, stop the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_missing

echo "==> building switchyard, topocheck and the lab"
cargo build --quiet -p switchyard -p switchyard-topology -p switchyard-lab
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d /tmp/switchyard-demo.XXXXXX)
chmod 755 "$work"
lab_pid=
cleanup() {
  if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then
    kill -TERM "$lab_pid"; wait "$lab_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> starting the lab in $work"
"$bin/switchyard-lab" combined --dir "$work" --regions east,west,south >"$work/lab.out" 2>"$work/lab.err" &
lab_pid=$!
for _ in $(seq 1 600); do
  grep -q '"ready":true' "$work/lab.out" 2>/dev/null && break
  kill -0 "$lab_pid" 2>/dev/null || { cat "$work/lab.err" >&2; echo "lab failed to start" >&2; exit 1; }
  sleep 0.1
done
grep -q '"ready":true' "$work/lab.out" || { echo "lab did not become ready" >&2; exit 1; }
topology="$work/topology.toml"

echo "==> topocheck $topology"
"$bin/topocheck" "$topology" || true

echo "==> switchyard state"
"$bin/switchyard" --topology "$topology" state --output text

echo "==> switchyard drill --to west"
"$bin/switchyard" --topology "$topology" drill --to west --yes --output text

echo "==> switchyard show latest (the way back, step by step)"
"$bin/switchyard" --topology "$topology" show latest --output text

echo "==> switchyard state (after the drill)"
"$bin/switchyard" --topology "$topology" state --output text

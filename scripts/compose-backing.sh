# SWITCHYARD_BACKING=compose for scripts/test.sh. Sourced, not executed.
#
# The backing itself is chosen in one place, tests/lab/src/backing.rs: the
# lab's cluster starters attach to docker-compose.yml's services instead of
# starting processes. This file brings those services up, says which stores
# run where, and lists the tests that cannot run on compose, each with its
# reason (`cargo test -- --skip`); a test missing from the list that needs
# what compose lacks fails, naming what is missing, and never falls back to
# the lab.

compose_backing_up() {
  if ! docker compose version >/dev/null 2>&1; then
    echo "SWITCHYARD_BACKING=compose needs the docker CLI with its compose plugin (docker compose)" >&2
    return 1
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "SWITCHYARD_BACKING=compose needs a running Docker engine (docker info failed)" >&2
    return 1
  fi
  export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-switchyard}"
  export COMPOSE_FILE="$PWD/docker-compose.yml"
  echo "==> docker compose up: the PostgreSQL members (project $COMPOSE_PROJECT_NAME)"
  docker compose up --detach --wait pg-east-1 pg-west-1 pg-south-1
  # The tests reach the members at their home addresses on the compose
  # networks: a Linux host routes to them, Docker Desktop does not.
  if ! pg_isready -q -h 172.30.1.11 -p 5432 -t 10; then
    echo "172.30.1.11:5432 (pg-east-1) is not reachable from this host: the compose backing needs a Linux Docker host" >&2
    return 1
  fi
  cat <<'EOF'
==> SWITCHYARD_BACKING=compose
    PostgreSQL   docker-compose.yml's pg-east-1, pg-west-1, pg-south-1 (reset for every cluster a test starts)
    Redis        the lab's redis-server and redis-sentinel processes (not attached to compose yet)
    MongoDB      the lab's simulator (not attached to compose's mongod yet)
    EventStoreDB the lab's simulator (not attached to compose's nodes yet)
    Cosmos DB    the lab's simulator (compose runs the same simulator)
    Stop the services afterwards with: docker compose down -v
EOF
  # name|reason: tests that need what docker-compose.yml does not have.
  local entry
  while IFS= read -r entry; do
    [ -n "$entry" ] || continue
    echo "    skipped on compose: ${entry%%|*}: ${entry#*|}"
    skip+=(--skip "${entry%%|*}")
  done <<'EOF'
verified_tls_observe_and_planned_switchover|PostgreSQL with TLS and its own pg_hba.conf lines; compose's members are plain
host_name_mismatch_and_tls_not_offered_are_refused|a one-region PostgreSQL with TLS
stale_coordinator_epoch_is_refused|a two-region PostgreSQL cluster; compose has three regions
twenty_planned_switchovers_under_load_lose_nothing|its writer tells members apart by their port on 127.0.0.1; compose's all listen on 5432 at their own addresses
crash_at_every_boundary_of_a_forced_failover_then_abort|it rejoins the old primary by calling pgctl.sh with 127.0.0.1 as the new primary's host
cluster_streams_and_tears_down|tests the lab's own processes (regions a, b)
binary_runs_until_sigterm|tests the lab's own processes (regions x, y)
a_taken_port_is_replaced_and_the_topology_follows|tests the lab's port handling
another_server_on_our_port_is_detected|tests the lab's port handling
EOF
}

# SWITCHYARD_BACKING=compose for scripts/test.sh. Sourced, not executed.
#
# The backing itself is chosen in one place, tests/lab/src/backing.rs: the
# lab's cluster starters attach to docker-compose.yml's services instead of
# starting processes (PostgreSQL, MongoDB, EventStoreDB, Redis with Sentinel,
# etcd, Consul, the Cosmos DB simulator's container), each resetting the
# services it attaches to. This file checks
# the engine, brings the services up, says which stores run where, and lists
# the tests that cannot run on compose, each with its reason (`cargo test --
# --skip`); a test missing from the list that needs what compose lacks fails,
# naming what is missing, and never falls back to the lab.

# The accepted values, checked before anything runs: a typo must not pass
# for the lab.
check_backing() {
  case "${SWITCHYARD_BACKING:-lab}" in
    lab|compose) ;;
    *)
      echo "SWITCHYARD_BACKING=${SWITCHYARD_BACKING}: not a backing; the accepted values are lab (the default: processes the lab starts) and compose (docker-compose.yml's services)" >&2
      return 2
      ;;
  esac
}

# Whether HOST:PORT accepts a TCP connection within 5 s.
compose_reachable() {
  timeout 5 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}

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
  # The services are shared by every test: one test at a time (each attach
  # also takes a lock, for test binaries run side by side).
  export SWITCHYARD_TEST_THREADS="${SWITCHYARD_TEST_THREADS:-1}"
  local stores=(pg-east-1 pg-west-1 pg-south-1
    catalog-east-1 catalog-east-2 catalog-west-1 catalog-west-2 catalog-south-arbiter
    ledger-east ledger-west ledger-south
    cache-east-1 cache-west-1 cache-south-1 cache-sentinel-east cache-sentinel-west cache-sentinel-south
    etcd-east etcd-west etcd-south consul-east consul-west consul-south cosmos)
  echo "==> docker compose up: the store and backend services (project $COMPOSE_PROJECT_NAME)"
  docker compose up --detach --wait --no-deps "${stores[@]}"
  # The tests reach the services at the addresses backing.rs resolves (home
  # addresses on the compose networks, or SWITCHYARD_COMPOSE_ADDR_<SERVICE>):
  # a Linux host routes to the networks, Docker Desktop does not.
  local svc addr
  for svc in pg-east-1:172.30.1.11:5432 catalog-east-1:172.30.1.21:27017 ledger-east:172.30.1.31:2113 \
             cache-east-1:172.30.1.41:6379 etcd-east:172.30.1.51:2379 consul-east:172.30.1.61:8500 \
             cosmos:172.30.1.81:8443; do
    local name="${svc%%:*}" var
    var="SWITCHYARD_COMPOSE_ADDR_$(echo "$name" | tr 'a-z-' 'A-Z_')"
    addr="${!var:-${svc#*:}}"
    if ! compose_reachable "$addr"; then
      echo "$addr ($name) is not reachable from this host: the compose backing needs a Linux Docker host, or $var=HOST:PORT" >&2
      return 1
    fi
  done
  # The simulator's URLs and certificate carry the name `cosmos` (the
  # controller follows the URLs it hands out): this host must resolve it.
  if ! getent hosts cosmos >/dev/null 2>&1; then
    echo "the Cosmos DB simulator's URLs carry the name cosmos, which this host does not resolve: add \"172.30.1.81 cosmos\" to /etc/hosts (or map it to SWITCHYARD_COMPOSE_ADDR_COSMOS's host)" >&2
    return 1
  fi
  cat <<'EOF2'
==> SWITCHYARD_BACKING=compose (one test at a time)
    PostgreSQL   pg-east-1, pg-west-1, pg-south-1 (reset for every cluster a test starts)
    MongoDB      catalog-* real mongod: the lab initiates the test's replica set on them (rs0)
    EventStoreDB ledger-east, -west, -south: real nodes, priorities set per test
    Redis        cache-* with the three Sentinels (stopped for tests without Sentinel)
    etcd         etcd-east, -west, -south
    Consul       consul-east, -west, -south (the tests that started the Consul simulator)
    Cosmos DB    the cosmos service's simulator, reset and driven through its test-control plane (no Cosmos DB emulator has regions)
    Stop the services afterwards with: docker compose down -v
EOF2
  # name|reason: tests that need what docker-compose.yml does not have.
  local entry
  while IFS= read -r entry; do
    [ -n "$entry" ] || continue
    echo "    skipped on compose: ${entry%%|*}: ${entry#*|}"
    skip+=(--skip "${entry%%|*}")
  done <<'EOF2'
verified_tls_observe_and_planned_switchover|PostgreSQL with TLS and its own pg_hba.conf lines; compose's members are plain
host_name_mismatch_and_tls_not_offered_are_refused|a one-region PostgreSQL with TLS
stale_coordinator_token_is_refused|a two-region PostgreSQL cluster; compose has three regions
twenty_planned_switchovers_under_load_lose_nothing|its writer tells members apart by their port on 127.0.0.1; compose's all listen on 5432 at their own addresses
crash_at_every_boundary_of_a_forced_failover_then_abort|it rejoins the old primary by calling pgctl.sh with 127.0.0.1 as the new primary's host
cluster_streams_and_tears_down|tests the lab's own processes (regions a, b)
binary_runs_until_sigterm|tests the lab's own processes (regions x, y)
a_taken_port_is_replaced_and_the_topology_follows|tests the lab's port handling
another_server_on_our_port_is_detected|tests the lab's port handling
cluster_replicates_is_watched_by_sentinels_and_stops_on_drop|tests the lab's own Redis processes (regions a, b)
binary_redis_up_runs_until_sigterm|tests the lab binary, which would attach too (it inherits SWITCHYARD_BACKING)
consul_up_prints_ready_and_address|tests the lab binary's Consul simulator
etcd_up_runs_a_real_etcd|tests the lab binary's own etcd
partitioned_leader_issues_nothing_after_its_lease|cuts a leader off in a network namespace with the backend on a veth address; compose's backends are on Docker networks
twenty_planned_switchovers_lose_no_acknowledged_write|counts rolled-back writes with the simulator's counter
primary_region_loss_elects_sticks_and_fails_back_on_request|counts rolled-back writes with the simulator's counter
forced_reconfig_only_with_accepted_loss_and_rejoin_counts_rollback|reads the simulator's rollback counter (serverStatus.repl.simRolledBackOps is a simulator extension)
a_candidate_beyond_max_lag_ms_is_refused_on_evidence|a bounded 2 s replication delay, which real mongod cannot be given (only stalled)
reconfig_is_validated_as_documented|tests the MongoDB simulator itself
frozen_members_do_not_stand_until_unfrozen|tests the MongoDB simulator itself
step_down_waits_for_a_caught_up_secondary|tests the MongoDB simulator itself
step_down_hands_over_only_to_an_unfrozen_caught_up_member|tests the MongoDB simulator itself
arbiters_and_priority_zero_members_never_become_primary|tests the MongoDB simulator itself
control_commands_drive_faults|tests the MongoDB simulator's control commands
driver_discovers_writes_reads_and_fails_over|tests the MongoDB simulator itself (its rollback counter)
pymongo_discovers_writes_and_fails_over|checks the MongoDB simulator with pymongo
reconfig_waits_for_oplog_commitment_and_completes_once_a_majority_is_back|tests the MongoDB simulator itself
forced_priority_change_on_the_elected_primary_then_safe_reconfigs_skip_the_oplog_wait|tests the MongoDB simulator itself
current_config_must_be_on_a_majority_of_voters_before_the_next_reconfig|tests the MongoDB simulator itself
kurrentdbclient_discovers_appends_reads_from_a_follower_and_survives_a_resign|checks the EventStoreDB simulator with kurrentdbclient
http_gossip_info_and_admin_share_the_grpc_port|tests the EventStoreDB simulator itself
a_follower_answers_writes_with_the_not_leader_error_naming_the_leader|tests the EventStoreDB simulator itself
appends_over_grpc_are_idempotent_and_check_the_expected_revision|tests the EventStoreDB simulator itself
batch_append_answers_each_correlation_id_over_one_stream|tests the EventStoreDB simulator itself
batch_append_on_a_follower_ends_the_call_with_the_not_leader_error|tests the EventStoreDB simulator itself
py_consul_sessions_locks_cas_blocking_and_txn|checks the Consul simulator with py-consul
no_primary_while_both_regions_take_writes|a two-region Cosmos DB account; the cosmos service has three regions
microsoft_sdks_read_change_and_poll_the_simulated_account|checks the Cosmos DB simulator with Microsoft's SDKs
cosmosdb_up_prints_ready_and_takes_commands|tests the lab binary, which would attach too (it inherits SWITCHYARD_BACKING)
cosmosdb_up_listens_where_told_under_the_advertised_name|tests the lab binary's listeners
EOF2
}

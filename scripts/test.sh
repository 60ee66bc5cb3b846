#!/usr/bin/env bash
# Installs what is missing (PostgreSQL from Debian) and runs every test.
#
# SWITCHYARD_BACKING=compose scripts/test.sh runs the same tests against the
# services of docker-compose.yml (a Docker engine and the compose plugin
# needed; see docs/compose.md and tests/lab/src/backing.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/compose-backing.sh
check_backing
. scripts/lib.sh
install_missing

# No engine is needed (none runs in CI): the file is validated and checked
# against the topology that describes it, nothing is built or started.
echo "==> docker-compose.yml: docker-compose config -q, compose/check.py"
docker-compose -f docker-compose.yml config -q
python3 compose/check.py

skip=()
if [ "${SWITCHYARD_BACKING:-lab}" = compose ]; then
  compose_backing_up
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
# The pymongo check of the MongoDB simulator must run, not skip, here.
export SWITCHYARD_REQUIRE_PYMONGO=1
# So must the Azure SDK check of the Cosmos DB simulator.
export SWITCHYARD_REQUIRE_AZURE_SDK=1
# The same for the kurrentdbclient check of the EventStoreDB simulator.
export SWITCHYARD_REQUIRE_KURRENTDBCLIENT=1
# And for the py-consul check of the Consul simulator.
export SWITCHYARD_REQUIRE_PYCONSUL=1
# And the console's test in headless Chromium (selenium + chromium-driver).
export SWITCHYARD_REQUIRE_BROWSER=1
# Integration tests start real PostgreSQL clusters; two at a time is what two
# cores can carry without timeouts turning into flakes.
cargo test --workspace --locked --no-fail-fast -- --test-threads="${SWITCHYARD_TEST_THREADS:-2}" ${skip[@]+"${skip[@]}"}

# The PostgreSQL members' container scripts and compose.toml's hooks, run by
# the switchyard binary just built, with Debian's PostgreSQL in network
# namespaces (root only).
if [ "$(id -u)" -eq 0 ]; then
  echo "==> compose/postgres/test.sh"
  SWITCHYARD_BIN="$PWD/target/debug/switchyard" compose/postgres/test.sh
else
  echo "==> compose/postgres/test.sh skipped: network namespaces need root"
fi

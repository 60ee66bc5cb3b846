# Shared by scripts/test.sh and scripts/demo.sh: install what is missing on a
# bare Debian machine. Sourced, not executed.

# Debian packages the tests and the demo need. PostgreSQL, Redis (with
# Sentinel) and etcd run for real; protoc builds etcd-client's gRPC stubs.
# docker-compose (1.29) validates docker-compose.yml without a Docker engine
# (`config -q`); it brings PyYAML for compose/check.py. iproute2:
# compose/postgres/test.sh and the coordination partition tests put
# processes in network namespaces.
# chromium, chromium-driver: the console's browser test (coordinator/tests/console.rs).
SWITCHYARD_APT_PACKAGES="postgresql postgresql-client redis-server redis-sentinel docker-compose iproute2 etcd-server protobuf-compiler chromium chromium-driver"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

pg_bindir() {
  if [ -n "${SWITCHYARD_PG_BIN:-}" ]; then echo "$SWITCHYARD_PG_BIN"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_missing() {
  local missing=()
  [ -x "$(pg_bindir)/initdb" ] || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $SWITCHYARD_APT_PACKAGES >/dev/null
  fi
  # pymongo is the independent client that checks the MongoDB simulator.
  if ! python3 -c 'import pymongo' 2>/dev/null; then
    echo "==> installing pymongo from PyPI"
    python3 -m pip install --quiet pymongo 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages pymongo
  fi
  # Microsoft's own SDKs check the Cosmos DB simulator.
  if ! python3 -c 'import azure.mgmt.cosmosdb, azure.cosmos' 2>/dev/null; then
    echo "==> installing azure-mgmt-cosmosdb and azure-cosmos from PyPI"
    python3 -m pip install --quiet azure-mgmt-cosmosdb azure-cosmos 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages azure-mgmt-cosmosdb azure-cosmos
  fi
  # kurrentdbclient is the independent client that checks the EventStoreDB simulator.
  if ! python3 -c 'import kurrentdbclient' 2>/dev/null; then
    echo "==> installing kurrentdbclient from PyPI"
    python3 -m pip install --quiet kurrentdbclient 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages kurrentdbclient
  fi
  # jsonschema (an independent validator) checks real `--output json` lines
  # against docs/schemas/.
  if ! python3 -c 'import jsonschema' 2>/dev/null; then
    echo "==> installing jsonschema from PyPI"
    python3 -m pip install --quiet jsonschema 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages jsonschema
  fi
  # py-consul is the independent client that checks the Consul simulator.
  if ! python3 -c 'import consul; consul.Consul' 2>/dev/null; then
    echo "==> installing py-consul from PyPI"
    python3 -m pip install --quiet py-consul 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages py-consul
  fi
  # selenium drives Chromium (WebDriver) in the console's browser test.
  if ! python3 -c 'import selenium' 2>/dev/null; then
    echo "==> installing selenium from PyPI"
    python3 -m pip install --quiet selenium 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages selenium
  fi
  # The Debian packages start a cluster of their own on 5432 and a
  # redis-server on 6379; the lab never uses them (free ports, temp dirs, and
  # it checks that each port is answered by the process it started), so they
  # are left alone.
  if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; else
      echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2; return 1; fi
  fi
}

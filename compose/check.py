#!/usr/bin/env python3
"""Check that topologies/examples/compose.toml describes docker-compose.yml
exactly, without a Docker engine (CI runs it after `docker-compose config -q`).

Usage: compose/check.py [docker-compose.yml] [topology.toml]

Reads the compose file through `docker-compose config` (anchors and merge
keys resolved by Compose itself) and checks, for every store member of the
topology, that a service of the same name exists in the member's region, at
the member's host as its home address (172.30.<region>.<switchyard.host>),
and that the service tells its server that same address (PostgreSQL's member
name, Redis' announced address, EventStoreDB's advertised host, the MongoDB
replica set config in compose/mongodb/init.js); and that every store service
of the compose file is a member of the topology. Prints each mismatch and
exits 1 when there is one.
"""
import re
import subprocess
import sys
import tomllib

import yaml

NETS = {"east": 1, "west": 2, "south": 3}
# Services that are members of a store, by the image they run.
STORE_IMAGES = ("postgres:", "mongo:", "eventstore/eventstore:", "redis:")

compose_file = sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml"
topology_file = sys.argv[2] if len(sys.argv) > 2 else "topologies/examples/compose.toml"
errors = []


def err(msg):
    errors.append(msg)


resolved = subprocess.run(
    ["docker-compose", "-f", compose_file, "config"],
    check=True, capture_output=True, text=True,
).stdout
services = yaml.safe_load(resolved)["services"]
with open(topology_file, "rb") as f:
    topology = tomllib.load(f)


def env(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return e


def home(name, svc):
    labels = svc.get("labels") or {}
    region, n = labels.get("switchyard.region"), labels.get("switchyard.host")
    addrs = {net: (cfg or {}).get("ipv4_address") for net, cfg in (svc.get("networks") or {}).items()}
    for net, i in NETS.items():
        want = f"172.30.{i}.{n}"
        if addrs.get(net) != want:
            err(f"{compose_file}: service {name}: address on network {net} is {addrs.get(net)}, not {want}")
    return region, f"172.30.{NETS.get(region, 0)}.{n}"


members = {}
for store in topology.get("stores", []):
    for m in store.get("members", []):
        if "host" in m:
            members[m["name"]] = (store, m)

for name, (store, m) in members.items():
    svc = services.get(name)
    if svc is None:
        err(f"{topology_file}: member {name} of store {store['name']}: no service {name} in {compose_file}")
        continue
    region, addr = home(name, svc)
    host, port = m["host"].rsplit(":", 1)
    if region != m["region"]:
        err(f"{topology_file}: member {name}: region {m['region']}, but the service lives in {region}")
    if host != addr:
        err(f"{topology_file}: member {name}: host {host}, but the service's home address is {addr}")
    e = env(svc)
    kind = store["kind"]
    if kind == "postgres":
        if port != "5432" or e.get("SWITCHYARD_PG_MEMBER") != name:
            err(f"{compose_file}: service {name}: SWITCHYARD_PG_MEMBER={e.get('SWITCHYARD_PG_MEMBER')}, port {port}")
        hooks = dict(m.get("hooks") or {})
        hooks.update({f"extra.{k}": v for k, v in (hooks.pop("extra", None) or {}).items()})
        for hook, cmd in hooks.items():
            if isinstance(cmd, str) and "{member}" not in cmd:
                err(f"{topology_file}: member {name}: hook {hook} does not name {{member}} (the service)")
    elif kind == "redis":
        key = "SENTINEL_ANNOUNCE_IP" if m.get("sentinel") else "REDIS_ANNOUNCE_IP"
        want_port = "26379" if m.get("sentinel") else "6379"
        if e.get(key) != host or port != want_port:
            err(f"{compose_file}: service {name}: {key}={e.get(key)}, port {port}; the topology says {m['host']}")
    elif kind == "eventstoredb":
        for key in ("EVENTSTORE_NODE_HOST_ADVERTISE_AS", "EVENTSTORE_REPLICATION_IP"):
            if e.get(key) != host:
                err(f"{compose_file}: service {name}: {key}={e.get(key)}, the topology says {host}")
        if port != "2113":
            err(f"{topology_file}: member {name}: port {port}, EventStoreDB's HTTP port is 2113")

# The replica set config rs.initiate receives.
init = open("compose/mongodb/init.js").read()
rs = {h: (p, arb) for h, p, arb in re.findall(
    r'host: "([0-9.:]+)"(?:, priority: (\d+))?(, arbiterOnly: true)?', init)}
for name, (store, m) in members.items():
    if store["kind"] != "mongodb":
        continue
    if m["host"] not in rs:
        err(f"compose/mongodb/init.js: no member {m['host']} ({name})")
        continue
    prio, arb = rs.pop(m["host"])
    if bool(arb) != bool(m.get("arbiter")) or (not arb and float(prio) != float(m.get("priority", 1))):
        err(f"compose/mongodb/init.js: {m['host']} ({name}): priority {prio or '-'}{' arbiter' if arb else ''}, "
            f"the topology says priority {m.get('priority', 1)}{' arbiter' if m.get('arbiter') else ''}")
for h in rs:
    err(f"compose/mongodb/init.js: member {h} is not in {topology_file}")

for name, svc in services.items():
    image = svc.get("image", "")
    if image.startswith(STORE_IMAGES) and name not in members and svc.get("restart") != "no":
        err(f"{compose_file}: service {name} ({image}) is not a member of any store in {topology_file}")

# The Cosmos DB simulator: its ports and store name as the topology has them.
cosmos = " ".join(services["cosmos"].get("entrypoint") or [])
profiles = next(s for s in topology["stores"] if s["kind"] == "cosmosdb")
base = int(re.search(r"--base-port (\d+)", cosmos).group(1))
if f"--store {profiles['name']} " not in cosmos:
    err(f"{compose_file}: cosmos does not serve store {profiles['name']}")
want = {"endpoint": f"https://cosmos:{base + 1}/"}
if profiles["connection"].get("endpoint") != want["endpoint"]:
    err(f"{topology_file}: {profiles['name']}: endpoint {profiles['connection'].get('endpoint')}, the simulator serves {want['endpoint']}")
if profiles["connection"]["azure"].get("arm_endpoint") != f"https://cosmos:{base}":
    err(f"{topology_file}: {profiles['name']}: arm_endpoint is not https://cosmos:{base}")

# The switchyard servers: issue 10's flags, their own name and home address
# as node and advertised URL, and a backend whose every host is a name some
# etcd or Consul service answers to on its home network (where the name
# resolves to the home address and survives a region cut).
home_aliases = {}
for name, svc in services.items():
    region = (svc.get("labels") or {}).get("switchyard.region")
    cfg = (svc.get("networks") or {}).get(region) or {}
    for a in cfg.get("aliases") or []:
        home_aliases[a] = name
servers = [n for n in services if n.startswith("switchyard-") and n != "switchyard-tokens"]
if len(servers) != 3:
    err(f"{compose_file}: {len(servers)} switchyard servers, expected 3 (one per region)")
for name in servers:
    svc = services[name]
    cmd = svc.get("command") or []
    flags = dict(zip(cmd[1::2], cmd[2::2])) if cmd[:1] == ["serve"] else {}
    if not flags:
        err(f"{compose_file}: service {name}: command is not `serve --flag value ...`: {cmd}")
        continue
    _, addr = home(name, svc)
    for flag, want in (("--node", name), ("--advertise-url", f"http://{addr}:8080"), ("--listen", "0.0.0.0:8080")):
        if flags.get(flag) != want:
            err(f"{compose_file}: service {name}: {flag} {flags.get(flag)}, expected {want}")
    backend = flags.get("--backend", "")
    scheme, _, hosts = backend.partition("://")
    if scheme not in ("etcd", "consul") or not hosts:
        err(f"{compose_file}: service {name}: --backend {backend}, expected etcd://HOST:PORT,... or consul://HOST:PORT")
        continue
    for hp in hosts.split(","):
        host, _, port = hp.rpartition(":")
        target = home_aliases.get(host)
        image = services.get(target, {}).get("image", "")
        want_port = {"etcd": "2379", "consul": "8500"}[scheme]
        if target is None or not image.startswith({"etcd": "quay.io/coreos/etcd:", "consul": "hashicorp/consul:"}[scheme]) or port != want_port:
            err(f"{compose_file}: service {name}: --backend {backend}: {hp} is no {scheme} service's home-network alias at port {want_port}")

for e in errors:
    print(e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{topology_file} describes {compose_file}: {len(members)} members with hosts, every one in place")

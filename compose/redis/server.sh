#!/bin/sh
# Entry point of a Redis data member of docker-compose.yml. The configuration
# is written once into the data volume: Sentinel and Switchyard change a
# member's role with REPLICAOF and persist it with CONFIG REWRITE, and a
# restarted member must come back as what it was last told to be.
#   REDIS_ANNOUNCE_IP  this member's home address: the container sits on
#                      every region network, and the master must report it
#                      in INFO replication exactly as the topology's host
#   REDIS_REPLICAOF    the initial master's address (empty on the master)
#   REDIS_REPLICA_PRIORITY  Sentinel's preference when promoting (lower is
#                      preferred): the topology's priority, mapped as
#                      docs/redis.md says
# The settings are the lab's (tests/lab/src/redis.rs).
set -eu
conf=/data/redis.conf
if [ ! -s "$conf" ]; then
  cat > "$conf" <<CONF
port 6379
protected-mode no
dir /data
save ""
appendonly yes
appendfsync everysec
repl-diskless-sync yes
repl-diskless-sync-delay 0
repl-backlog-size 64mb
replica-announce-ip ${REDIS_ANNOUNCE_IP}
replica-priority ${REDIS_REPLICA_PRIORITY:-100}
CONF
  if [ -n "${REDIS_REPLICAOF:-}" ]; then
    echo "replicaof ${REDIS_REPLICAOF} 6379" >> "$conf"
  fi
fi
exec redis-server "$conf"

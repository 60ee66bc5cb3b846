#!/bin/sh
# Entry point of docker-compose.yml's Redis containers:
#   entry.sh server    a data member (redis-server, /data/redis.conf)
#   entry.sh sentinel  a Sentinel (redis-sentinel, /data/sentinel.conf)
# The configuration is written once into the container's data volume and kept
# across restarts: Sentinel and Switchyard change a member's role with
# REPLICAOF and persist it with CONFIG REWRITE, Sentinel rewrites its own file
# (the current master, the other Sentinels, the epoch), and a restarted
# process must come back as what it was last told to be.
#
# server:
#   REDIS_ANNOUNCE_IP  this member's home address: the container sits on
#                      every region network, and the master must report it
#                      in INFO replication exactly as the topology's host
#   REDIS_REPLICAOF    the initial master's address (empty on the master)
#   REDIS_REPLICA_PRIORITY  Sentinel's preference when promoting (lower is
#                      preferred): the topology's priority, mapped as
#                      docs/redis.md says
# sentinel:
#   SENTINEL_ANNOUNCE_IP  this Sentinel's address in its home region
#   SENTINEL_MASTER_IP    the initial master (cache-east-1)
#   SENTINEL_QUORUM       votes needed to agree that the master is down
# The settings are the lab's (tests/lab/src/redis.rs).
set -eu
role="${1:-}"
case "$role" in
  server) conf=/data/redis.conf ;;
  sentinel) conf=/data/sentinel.conf ;;
  *) echo "usage: $0 server|sentinel" >&2; exit 2 ;;
esac
if [ ! -s "$conf" ]; then
  if [ "$role" = server ]; then
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
  else
    cat > "$conf" <<CONF
port 26379
protected-mode no
sentinel announce-ip ${SENTINEL_ANNOUNCE_IP}
sentinel resolve-hostnames no
sentinel monitor cache ${SENTINEL_MASTER_IP} 6379 ${SENTINEL_QUORUM}
sentinel down-after-milliseconds cache 5000
sentinel failover-timeout cache 30000
sentinel parallel-syncs cache 5
CONF
  fi
fi
exec "redis-$role" "$conf"

#!/bin/sh
# Entry point of a Redis Sentinel of docker-compose.yml. Sentinel rewrites its
# configuration file (it records the current master, the other Sentinels and
# the epoch), so the file is written once into the container's data volume
# and kept across restarts.
#   SENTINEL_ANNOUNCE_IP  this Sentinel's address in its home region (the
#                         container sits on every region network)
#   SENTINEL_MASTER_IP    the initial master (cache-east-1)
#   SENTINEL_QUORUM       votes needed to agree that the master is down
set -eu
conf=/data/sentinel.conf
if [ ! -s "$conf" ]; then
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
exec redis-sentinel "$conf"

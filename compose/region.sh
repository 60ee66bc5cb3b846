#!/bin/sh
# Cut a region of docker-compose.yml off from the others, or heal it.
#
#   compose/region.sh cut REGION
#   compose/region.sh heal REGION
#
# Each region is a Docker network (switchyard_east, _west, _south) and every
# member sits on all three, with its home address on its own region's
# network: being on network R is having a route to region R. Cutting R
# disconnects R's members from the other regions' networks and everyone else
# from R's network (`docker network disconnect`); R's members still reach each
# other. Healing reconnects every container with the addresses
# docker-compose.yml gives it. Containers are found by their labels
# (com.docker.compose.project, switchyard.region); the Cosmos DB simulator is
# labelled `global` (Azure's control plane is not in any one region) and
# never cut.
set -eu
project="${COMPOSE_PROJECT_NAME:-switchyard}"
regions="east west south"
cmd="${1:-}"; region="${2:-}"
case " $regions " in *" $region "*) ;; *) echo "usage: $0 cut|heal east|west|south" >&2; exit 2;; esac

containers() { # label filter... -> container names
  docker ps -a --filter "label=com.docker.compose.project=$project" "$@" --format '{{.Names}}'
}
# The address docker-compose.yml gives container $1 on network $2: every
# service has one number (label switchyard.host) and the address
# 172.30.<1 east, 2 west, 3 south>.<number> on each region network.
address() {
  docker inspect --format "{{ index .Config.Labels \"switchyard.host\" }}" "$1" |
    awk -v net="$2" 'BEGIN { n["east"] = 1; n["west"] = 2; n["south"] = 3 }
      { print "172.30." n[net] "." $1 }'
}

for c in $(containers); do
  home=$(docker inspect --format '{{ index .Config.Labels "switchyard.region" }}' "$c")
  [ "$home" = global ] && continue
  if [ "$home" = "$region" ]; then nets=$(echo "$regions" | tr ' ' '\n' | grep -vx "$region"); else nets="$region"; fi
  for net in $nets; do
    case "$cmd" in
      cut) docker network disconnect "${project}_$net" "$c" 2>/dev/null || true ;;
      heal)
        if ! docker inspect --format '{{ json .NetworkSettings.Networks }}' "$c" | grep -q "\"${project}_$net\""; then
          # The service name is the alias Compose gives every attachment; the
          # home network (with etcd1.., consul1..) is never disconnected.
          docker network connect --ip "$(address "$c" "$net")" \
            --alias "$(docker inspect --format '{{ index .Config.Labels "com.docker.compose.service" }}' "$c")" \
            "${project}_$net" "$c"
        fi
        ;;
      *) echo "usage: $0 cut|heal east|west|south" >&2; exit 2 ;;
    esac
  done
done
echo "$region: ${cmd} done"

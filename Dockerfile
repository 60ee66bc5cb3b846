# syntax=docker/dockerfile:1
#
# Switchyard's binaries in a small, non-root runtime image.
#
#   docker build -t switchyard .                    # `runtime`: switchyard, topocheck, switchyard-lab
#   docker build --target compose -t switchyard:compose .
#
# `compose` adds the docker CLI and its compose plugin: the PostgreSQL hooks of
# topologies/examples/compose.toml run `docker compose exec` from inside the
# `switchyard serve` containers (docker-compose.yml mounts the engine's socket).
# See docs/compose.md.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_SUITE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_SUITE} AS build
# protoc: etcd-client's build script compiles etcd's protos (tonic-build), and
# `serve` links it for `--backend etcd://...`; cmake for aws-lc-sys (rustls).
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds (BuildKit);
# the binaries are copied out because the cache is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard --bin topocheck --bin switchyard-lab \
 && mkdir -p /out \
 && cp target/release/switchyard target/release/topocheck target/release/switchyard-lab /out/

# The docker CLI and compose plugin are static Go binaries; only they are taken.
FROM docker:27.5.1-cli AS docker-cli

FROM debian:${DEBIAN_SUITE}-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid: named volumes created from this image (tokens, the Cosmos DB
# simulator's secrets) are owned by it, and every container using them runs as it.
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --create-home switchyard \
 && mkdir -p /var/lib/switchyard/state /var/lib/switchyard/tokens /run/cosmos \
 && chown -R switchyard:switchyard /var/lib/switchyard /run/cosmos
COPY --from=build /out/ /usr/local/bin/
WORKDIR /var/lib/switchyard
USER 10001:10001
ENTRYPOINT ["switchyard"]
CMD ["--help"]

FROM base AS compose
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker-cli /usr/local/libexec/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose

# The default target: last.
FROM base AS runtime

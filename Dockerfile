# syntax=docker/dockerfile:1
#
# One image for every shape: `myelin` (all roles in one process) and the
# per-role binaries of a split deployment, chosen by MYELIN_ROLE.
#
#   docker build -t myelin .
#   docker run --rm -v "$PWD/data:/data" --user "$(id -u):$(id -g)" \
#       -e SYNAPSE_SERVER_NAME=example.org -e SYNAPSE_REPORT_STATS=no myelin generate
#   docker run -d -v "$PWD/data:/data" --user "$(id -u):$(id -g)" -p 8008:8008 myelin
#
# Without --user the processes run as 991:991 (Synapse's UID), which must
# then own the data directory: generate writes its files readable by their
# owner only.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The binaries keep the release profile's line tables (for panics and
# backtraces); compressing those sections shrinks each binary about threefold.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && for bin in myelin myelin-gateway myelin-client-api myelin-synchrotron myelin-event-persister myelin-media myelin-pusher myelin-federation-api myelin-federation-sender; do \
         if [ ! -x "target/release/$bin" ]; then echo "the build made no $bin" >&2; exit 1; fi; \
         objcopy --compress-debug-sections=zlib "target/release/$bin" "/out/$bin"; \
       done

FROM debian:bookworm-slim

# curl is for health checks (`curl -fsS http://localhost:8008/health`).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# The same UID/GID as the Synapse image (991), so a data directory moved over
# from Synapse keeps working.
RUN groupadd --system --gid 991 myelin \
    && useradd --system --uid 991 --gid 991 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin myelin \
    && mkdir -p /data \
    && chown 991:991 /data

COPY --from=builder /out/ /usr/local/bin/
COPY --chmod=0755 docker/start.sh /start.sh

VOLUME ["/data"]
EXPOSE 8008
USER 991:991
WORKDIR /data

HEALTHCHECK --start-period=30s --interval=15s --timeout=5s \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://localhost:8008/health"]

ENTRYPOINT ["/start.sh"]
CMD ["run"]

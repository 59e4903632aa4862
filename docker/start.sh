#!/bin/sh
# Entrypoint of the Myelin image, in the manner of matrixdotorg/synapse's:
#
#   generate        write homeserver.yaml, the signing key and the log config
#                   into /data, for SYNAPSE_SERVER_NAME (or MYELIN_SERVER_NAME)
#   run (default)   serve with ${MYELIN_CONFIG_PATH:-/data/homeserver.yaml}:
#                   every role in one process, or the one role MYELIN_ROLE names
#                   (client-api, synchrotron, event-persister, media, pusher,
#                   federation-api, federation-sender or gateway)
#   -...            flags go to `run`
#   register-user, hash-password, set-admin
#                   the operator commands of `myelin`
#   anything else   runs as a command (`sh`, say)
set -eu

config="${MYELIN_CONFIG_PATH:-${SYNAPSE_CONFIG_PATH:-/data/homeserver.yaml}}"
data_dir="${MYELIN_DATA_DIR:-${SYNAPSE_DATA_DIR:-/data}}"

# sysexits' EX_USAGE, as the binaries use for bad usage.
usage_error() {
    echo "start.sh: $*" >&2
    exit 64
}

run() {
    # A -c given on the command line wins over the environment.
    for arg in "$@"; do
        case "$arg" in
            -c | --config-path | --config-path=*) config="" ;;
        esac
    done
    if [ -n "$config" ]; then
        set -- -c "$config" "$@"
    fi
    role="${MYELIN_ROLE:-}"
    case "$role" in
        "")
            exec myelin run "$@" ;;
        client-api | synchrotron | event-persister | media | pusher | federation-api | federation-sender | gateway)
            exec "myelin-$role" "$@" ;;
        *)
            usage_error "MYELIN_ROLE=$role is not one of client-api, synchrotron, event-persister, media, pusher, federation-api, federation-sender, gateway (or unset for all roles in one process)" ;;
    esac
}

if [ "$#" -eq 0 ]; then
    set -- run
fi

case "$1" in
    generate)
        shift
        server_name="${MYELIN_SERVER_NAME:-${SYNAPSE_SERVER_NAME:-}}"
        if [ -z "$server_name" ]; then
            usage_error "generate needs SYNAPSE_SERVER_NAME (or MYELIN_SERVER_NAME), e.g. -e SYNAPSE_SERVER_NAME=example.org"
        fi
        if [ -d "$data_dir" ] && [ ! -w "$data_dir" ]; then
            usage_error "$data_dir is not writable by uid $(id -u): run with --user \"\$(id -u):\$(id -g)\" or chown it to 991:991"
        fi
        exec myelin generate --server-name "$server_name" --data-dir "$data_dir" \
            --report-stats "${SYNAPSE_REPORT_STATS:-no}" "$@" ;;
    run)
        shift
        run "$@" ;;
    -*)
        run "$@" ;;
    register-user | hash-password | set-admin)
        exec myelin "$@" ;;
    *)
        exec "$@" ;;
esac

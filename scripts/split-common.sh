# shellcheck shell=bash
# Shared by split-up.sh, split-add.sh and split-down.sh: the layout of a run
# directory and how one process of the split topology is started, recorded
# and stopped. Sourced, never run.
#
# A run directory ($SPLIT_DIR) holds:
#   topology.env   KEY=VALUE lines (no quoting; values have no whitespace):
#                  HS_URL, DATABASE, DATABASE_URL, BUS_PREFIX, ... and for
#                  each process <ROLE>_<N>_URL / <ROLE>_<N>_PID / <ROLE>_<N>_NAME
#                  (ROLE as TRAEFIK, GATEWAY, CLIENT_API, SYNCHROTRON,
#                  EVENT_PERSISTER, MEDIA, PUSHER, FEDERATION_API; N from 1).
#                  Later lines win.
#   pids           one line per process started: PID STARTTIME ROLE NAME
#                  (STARTTIME from /proc, so a reused PID is never signalled)
#   myelin.env     the environment every Myelin process gets
#   data/          homeserver.yaml and the signing key (myelin generate), and
#                  media_store/, the media files every media replica shares
#   bin/           hard links to the binaries this run started
#   logs/NAME.log  each process's stdout and stderr
#   traefik/       traefik's static and dynamic (file provider) config

SPLIT_ROLES="gateway client-api synchrotron event-persister media pusher federation-api federation-sender"

split_say() { printf 'split: %s\n' "$*" >&2; }
split_die() {
    split_say "error: $*"
    exit 1
}

# The value of KEY in topology.env (the last one written), or empty.
split_get() {
    local file="$SPLIT_DIR/topology.env"
    [ -f "$file" ] || return 0
    sed -n "s/^$1=//p" "$file" | tail -n 1
}

split_set() {
    printf '%s=%s\n' "$1" "$2" >>"$SPLIT_DIR/topology.env"
}

# gateway -> GATEWAY, event-persister -> EVENT_PERSISTER
split_role_key() {
    printf '%s' "$1" | tr 'a-z-' 'A-Z_'
}

split_binary_name() {
    case "$1" in
        gateway) echo myelin-gateway ;;
        client-api) echo myelin-client-api ;;
        synchrotron) echo myelin-synchrotron ;;
        event-persister) echo myelin-event-persister ;;
        media) echo myelin-media ;;
        pusher) echo myelin-pusher ;;
        federation-api) echo myelin-federation-api ;;
        federation-sender) echo myelin-federation-sender ;;
        *) split_die "unknown role '$1' (one of: $SPLIT_ROLES)" ;;
    esac
}

# The next free index for ROLE in topology.env.
split_next_index() {
    local key n=1
    key="$(split_role_key "$1")"
    while [ -n "$(split_get "${key}_${n}_PID")" ]; do
        n=$((n + 1))
    done
    echo "$n"
}

# Start time of PID in clock ticks since boot (field 22 of /proc/PID/stat).
split_starttime() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

# True while PID is the process that was recorded with STARTTIME and has not
# exited (a zombie nobody reaped counts as gone).
split_alive() { # PID STARTTIME
    local stat expected="$2"
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$expected" ]
}

split_record_pid() { # PID ROLE NAME
    local start
    start="$(split_starttime "$1" || echo 0)"
    printf '%s %s %s %s\n' "$1" "$start" "$2" "$3" >>"$SPLIT_DIR/pids"
}

# Runs "$@" with none of the caller's MYELIN_*/SYNAPSE_* variables (but
# MYELIN_LOG), so only this deployment's settings reach a Myelin process.
split_scrubbed() {
    local name
    for name in $(compgen -e); do
        case "$name" in
            MYELIN_LOG) ;;
            MYELIN_* | SYNAPSE_*) unset "$name" ;;
        esac
    done
    "$@"
}

split_log_tail() { # NAME [LINES]
    local log="$SPLIT_DIR/logs/$1.log"
    [ -f "$log" ] || return 0
    printf -- '--- %s (last %s lines of %s) ---\n' "$1" "${2:-40}" "$log" >&2
    tail -n "${2:-40}" "$log" >&2
}

# Waits until NAME (PID) printed its listening line; prints the port.
split_wait_listening() { # NAME PID
    local log="$SPLIT_DIR/logs/$1.log" line deadline
    deadline=$((SECONDS + ${SPLIT_READY_TIMEOUT:-180}))
    while :; do
        line="$(grep -a -m 1 '^Myelin listening on http://' "$log" 2>/dev/null || true)"
        if [ -n "$line" ]; then
            line="${line%%[[:space:]]}"
            echo "${line##*:}"
            return 0
        fi
        if ! kill -0 "$2" 2>/dev/null; then
            split_log_tail "$1"
            split_die "$1 (pid $2) exited before listening"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            split_log_tail "$1"
            split_die "$1 (pid $2) did not print its listening line within ${SPLIT_READY_TIMEOUT:-180}s"
        fi
        sleep 0.1
    done
}

# Waits until URL/ready answers 200 (PID must stay up meanwhile).
split_wait_ready() { # NAME PID URL
    local deadline
    deadline=$((SECONDS + ${SPLIT_READY_TIMEOUT:-180}))
    until curl -fsS -o /dev/null --max-time 5 "$3/ready" 2>/dev/null; do
        if ! kill -0 "$2" 2>/dev/null; then
            split_log_tail "$1"
            split_die "$1 (pid $2) exited before $3/ready answered 200"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            split_log_tail "$1"
            split_say "last answer of $3/ready: $(curl -sS --max-time 5 "$3/ready" 2>&1 || true)"
            split_die "$1 (pid $2): $3/ready did not answer 200 within ${SPLIT_READY_TIMEOUT:-180}s"
        fi
        sleep 0.2
    done
}

# Starts one Myelin process of ROLE on PORT (0: the kernel picks one) with
# the run's environment plus any extra KEY=VALUE arguments, records it, and
# waits for its listening line. Sets SPLIT_STARTED_NAME/_PID/_URL.
split_start_myelin() { # ROLE PORT [KEY=VALUE...]
    local role="$1" port="$2" key index name bin pid
    shift 2
    key="$(split_role_key "$role")"
    index="$(split_next_index "$role")"
    name="$role-$index"
    bin="$SPLIT_DIR/bin/$(split_binary_name "$role")"
    [ -x "$bin" ] || split_die "$bin is missing"
    mkdir -p "$SPLIT_DIR/logs"
    (
        for setting in $(compgen -e); do
            case "$setting" in
                MYELIN_LOG) ;;
                MYELIN_* | SYNAPSE_*) unset "$setting" ;;
            esac
        done
        set -a
        # shellcheck disable=SC1091
        . "$SPLIT_DIR/myelin.env"
        set +a
        export MYELIN_LISTENERS__0__PORT="$port"
        export MYELIN_INSTANCE="$name"
        for setting in "$@"; do
            export "${setting?}"
        done
        exec "$bin" -c "$SPLIT_DIR/data/homeserver.yaml"
    ) </dev/null >>"$SPLIT_DIR/logs/$name.log" 2>&1 &
    pid=$!
    split_record_pid "$pid" "$role" "$name"
    split_set "${key}_${index}_NAME" "$name"
    split_set "${key}_${index}_PID" "$pid"
    port="$(split_wait_listening "$name" "$pid")"
    split_set "${key}_${index}_URL" "http://127.0.0.1:$port"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    SPLIT_STARTED_NAME="$name" SPLIT_STARTED_PID="$pid" SPLIT_STARTED_URL="http://127.0.0.1:$port"
}

# The URLs of every recorded process of ROLE, comma-separated.
split_role_urls() { # ROLE
    local key n=1 urls="" url
    key="$(split_role_key "$1")"
    while [ -n "$(split_get "${key}_${n}_PID")" ]; do
        url="$(split_get "${key}_${n}_URL")"
        [ -n "$url" ] && urls="${urls:+$urls,}$url"
        n=$((n + 1))
    done
    echo "$urls"
}

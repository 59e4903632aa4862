#!/usr/bin/env bash
# Stops a split topology started by split-up.sh: exactly the processes listed
# in SPLIT_DIR/pids (each checked against its recorded start time, so a PID
# reused by another program is left alone) get SIGTERM, and those still
# running after the grace period get SIGKILL. Then drops the run's database,
# deletes its JetStream stream, and removes the binaries' links; the logs and
# configs stay in SPLIT_DIR.
#
#   scripts/split-down.sh [SPLIT_DIR]        (or SPLIT_DIR in the environment)
#
# SPLIT_STOP_GRACE: seconds between SIGTERM and SIGKILL (default 30; the
# synchrotrons answer parked long-polls and the workers drain for up to 10 s).
# Running it twice is harmless.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=split-common.sh source-path=SCRIPTDIR
. "$repo/scripts/split-common.sh"

SPLIT_DIR="${1:-${SPLIT_DIR:-}}"
[ -n "$SPLIT_DIR" ] || split_die "usage: split-down.sh SPLIT_DIR"
[ -d "$SPLIT_DIR" ] || split_die "$SPLIT_DIR does not exist"
SPLIT_DIR="$(cd "$SPLIT_DIR" && pwd)"
grace="${SPLIT_STOP_GRACE:-30}"

# --- processes ----------------------------------------------------------------
running=()
if [ -f "$SPLIT_DIR/pids" ]; then
    while read -r pid start role name; do
        [ -n "$pid" ] || continue
        if split_alive "$pid" "$start"; then
            split_say "stopping $name ($role, pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            running+=("$pid $start $name")
        fi
    done <"$SPLIT_DIR/pids"
fi

deadline=$((SECONDS + grace))
while [ "${#running[@]}" -gt 0 ]; do
    still=()
    for entry in "${running[@]}"; do
        read -r pid start name <<<"$entry"
        split_alive "$pid" "$start" && still+=("$entry")
    done
    running=("${still[@]+"${still[@]}"}")
    [ "${#running[@]}" -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
        for entry in "${running[@]}"; do
            read -r pid start name <<<"$entry"
            split_say "$name (pid $pid) still running after ${grace}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        done
        break
    fi
    sleep 0.2
done

# --- database -------------------------------------------------------------------
database="$(split_get DATABASE)"
admin_url="$(split_get POSTGRES_ADMIN_URL)"
status=0
if [ -n "$database" ] && [ -n "$admin_url" ]; then
    if psql "$admin_url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >&2; then
        split_say "dropped database $database"
    else
        split_say "error: cannot drop database $database"
        status=1
    fi
fi

# --- bus ------------------------------------------------------------------------
# The one JetStream stream of the run ({PREFIX}_PERSISTED_EVENTS, see
# shared/bus/src/subjects.rs), deleted over the NATS protocol; best effort.
prefix="$(split_get BUS_PREFIX)"
nats_url="$(split_get NATS_URL)"
if [ -n "$prefix" ] && [ -n "$nats_url" ]; then
    stream="$(printf '%s_PERSISTED_EVENTS' "$prefix" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9_\n-' '_')"
    python3 - "$nats_url" "$stream" <<'PY' >&2 || split_say "could not delete stream $stream (left on the NATS server)"
import json, socket, sys
from urllib.parse import unquote, urlsplit

url, stream = sys.argv[1], sys.argv[2]
parts = urlsplit(url if "://" in url else "nats://" + url)
connect = {"verbose": False, "pedantic": False, "headers": False}
if parts.username:
    connect["user"] = unquote(parts.username)
    connect["pass"] = unquote(parts.password or "")
try:
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=10)
except OSError as error:
    sys.exit(f"cannot connect to {url}: {error}")
reader = sock.makefile("rb")
reader.readline()  # INFO
sock.sendall(
    f"CONNECT {json.dumps(connect)}\r\nSUB _INBOX.split_down 1\r\n"
    f"PUB $JS.API.STREAM.DELETE.{stream} _INBOX.split_down 0\r\n\r\n".encode()
)
while True:
    line = reader.readline()
    if not line:
        sys.exit("the NATS server closed the connection")
    if line.startswith(b"PING"):
        sock.sendall(b"PONG\r\n")
    elif line.startswith(b"-ERR"):
        sys.exit(line.decode().strip())
    elif line.startswith(b"MSG"):
        size = int(line.split()[-1])
        answer = json.loads(reader.read(size + 2)[:size] or b"{}")
        error = answer.get("error")
        if answer.get("success"):
            print(f"split: deleted stream {stream}")
        elif error and error.get("err_code") == 10059:
            pass  # stream not found: already gone
        else:
            sys.exit(f"deleting {stream}: {answer}")
        break
PY
fi

rm -rf "${SPLIT_DIR:?}/bin"
exit "$status"

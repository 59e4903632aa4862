#!/usr/bin/env bash
# Starts one more process of ROLE (event-persister, client-api, synchrotron, media, pusher,
# federation-api)
# in a running split topology, with the same environment as the others and
# a port of its own, and waits until its /ready answers 200.
#
#   scripts/split-add.sh ROLE [SPLIT_DIR]        (or SPLIT_DIR in the environment)
#
# Prints NAME=..., PID=... and URL=... of the new process, and records it in
# SPLIT_DIR/topology.env and SPLIT_DIR/pids, so split-down.sh stops it too.
# A new client-api, synchrotron, media or federation-api is not added to the gateway's upstreams
# (they are fixed when the gateway starts); reach it by its URL.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=split-common.sh source-path=SCRIPTDIR
. "$repo/scripts/split-common.sh"

role="${1:-}"
[ -n "$role" ] || split_die "usage: split-add.sh ROLE [SPLIT_DIR]"
case "$role" in
    event-persister | client-api | synchrotron | media | pusher | federation-api | federation-sender) ;;
    *) split_die "split-add.sh starts an event-persister, client-api, synchrotron, media, pusher, federation-api or federation-sender, not '$role'" ;;
esac
SPLIT_DIR="${2:-${SPLIT_DIR:-}}"
[ -n "$SPLIT_DIR" ] || split_die "usage: split-add.sh ROLE [SPLIT_DIR]"
if [ ! -f "$SPLIT_DIR/topology.env" ] || [ ! -f "$SPLIT_DIR/myelin.env" ]; then
    split_die "$SPLIT_DIR is not a run directory of split-up.sh"
fi
SPLIT_DIR="$(cd "$SPLIT_DIR" && pwd)"

# One start at a time, so two never take the same index.
exec 8>"$SPLIT_DIR/add.lock"
command -v flock >/dev/null 2>&1 && flock 8

# The new process must not inherit the lock, or the next add waits for it
# for as long as the process runs.
split_start_myelin "$role" "${PORT:-0}" 8>&-
split_wait_ready "$SPLIT_STARTED_NAME" "$SPLIT_STARTED_PID" "$SPLIT_STARTED_URL"
echo "NAME=$SPLIT_STARTED_NAME"
echo "PID=$SPLIT_STARTED_PID"
echo "URL=$SPLIT_STARTED_URL"

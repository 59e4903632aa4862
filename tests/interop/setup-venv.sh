#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv the interop tests run third-party
# clients from: matrix-nio (a client library) and matrix-synapse (for its
# `register_new_matrix_user` script). Versions are pinned so results are
# reproducible; bump them here.
#
# The venv is scripts/python-venv.sh's (${MYELIN_VENV:-$HOME/.cache/myelin/venv});
# the last line written to stdout is its path; pip's output goes to stderr.
set -euo pipefail

NIO_VERSION="0.26.0"
SYNAPSE_VERSION="1.163.2"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$repo/scripts/python-venv.sh" "matrix-nio==$NIO_VERSION" "matrix-synapse==$SYNAPSE_VERSION"

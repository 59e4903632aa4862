#!/usr/bin/env bash
# Peak memory of the split shape's gateway and media worker while clients
# upload and download large files through traefik.
#
#   loadtest/media-memory.sh [SIZE_MIB] [CLIENTS]     (defaults: 45 and 4)
#
# Starts scripts/split-up.sh with one replica per role and the release
# binaries (`cargo build --release --bins` first), records each process's
# resident memory (VmRSS) before, then has CLIENTS curl processes upload a
# SIZE_MIB file at once and download it again, and prints each process's
# peak resident memory (VmHWM) and the bytes that came back. PostgreSQL and
# NATS as for split-up.sh (MYELIN_POSTGRES_URL, MYELIN_NATS_URL).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mib="${1:-45}"
clients="${2:-4}"
work="$(mktemp -d "${TMPDIR:-/tmp}/myelin-media-memory-XXXXXX")"
split_dir="$work/split"

cleanup() {
    if [ -f "$split_dir/topology.env" ]; then
        bash "$repo/scripts/split-down.sh" "$split_dir" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

target="$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
SPLIT_DIR="$split_dir" SPLIT_BUILD=0 SPLIT_BIN_DIR="$target/release" \
    CLIENT_APIS=1 SYNCHROTRONS=1 PERSISTERS=1 GATEWAYS=1 MEDIA=1 MYELIN_LOG=warn \
    bash "$repo/scripts/split-up.sh" >"$work/up.log" 2>&1 ||
    { cat "$work/up.log"; exit 1; }
hs_url="$(sed -n 's/^HS_URL=//p' "$work/up.log")"
pid_of() { sed -n "s/^PID \([0-9]*\) $1 .*/\1/p" "$work/up.log" | head -1; }
gateway="$(pid_of gateway)"
media="$(pid_of media)"
status_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

token="$(curl -sf -X POST "$hs_url/_matrix/client/v3/register" \
    -H 'content-type: application/json' \
    -d '{"username":"memory","password":"memory-password-1","auth":{"type":"m.login.dummy"}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/upload.bin"

echo "before: gateway VmRSS $(status_kib "$gateway" VmRSS) KiB," \
    "media VmRSS $(status_kib "$media" VmRSS) KiB"
for n in $(seq "$clients"); do
    curl -sf -X POST "$hs_url/_matrix/media/v3/upload" -H "authorization: Bearer $token" \
        -H 'content-type: application/octet-stream' --data-binary "@$work/upload.bin" \
        -o "$work/uploaded-$n.json" &
done
wait
for n in $(seq "$clients"); do
    media_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["content_uri"].rsplit("/", 1)[1])' "$work/uploaded-$n.json")"
    curl -sf "$hs_url/_matrix/client/v1/media/download/split.test/$media_id" \
        -H "authorization: Bearer $token" -o "$work/downloaded-$n.bin" &
done
wait
for n in $(seq "$clients"); do
    cmp -s "$work/upload.bin" "$work/downloaded-$n.bin" || { echo "download $n differs"; exit 1; }
done
echo "peak:   gateway VmHWM $(status_kib "$gateway" VmHWM) KiB, media VmHWM $(status_kib "$media" VmHWM) KiB"
echo "moved:  $clients uploads and $clients downloads of $size_mib MiB, every download identical"

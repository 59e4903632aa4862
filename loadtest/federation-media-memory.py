#!/usr/bin/env python3
"""Peak memory of a Myelin single process while other servers download a
large file from it over federation (`/_matrix/federation/v1/media/download`).

    ~/.cache/myelin/venv/bin/python loadtest/federation-media-memory.py \
        --size-mib 40 --clients 4 [--myelin-bin PATH] [--myelin-before-bin PATH]

Each build runs as a federating single process (TLS federation listener,
certificate checks off, as in federation.py). One user uploads a file of
SIZE MiB; then CLIENTS requests, each signed by a generated peer server
(fedpeer.py, which serves its key), download it at the same time, three
times over. Prints the process's resident memory before and its peak
(VmHWM) after, and checks every body holds the whole file.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path

import federation  # noqa: E402  (brings run.py and the venv)
import fedpeer  # noqa: E402
import provision  # noqa: E402
from run import free_port  # noqa: E402

ROUNDS = 3


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def upload(server, size: int) -> tuple[str, bytes]:
    user = provision.register(server.base_url, server.shared_secret, "uploader")
    data = os.urandom(size)
    request = urllib.request.Request(
        f"{server.base_url}/_matrix/media/v3/upload?filename=big.bin", data=data, method="POST",
        headers={"Authorization": f"Bearer {user.token}", "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=300) as answer:
        mxc = json.load(answer)["content_uri"]
    return mxc.rsplit("/", 1)[1], data


def download(peer: fedpeer.FederationPeer, server_name: str, media_id: str) -> bytes:
    host, port = server_name.rsplit(":", 1)
    path = f"/_matrix/federation/v1/media/download/{media_id}"
    connection = http.client.HTTPSConnection(
        host, int(port), context=ssl._create_unverified_context(), timeout=300)
    connection.request("GET", path, headers={
        "Authorization": peer.authorization("GET", path, server_name)})
    answer = connection.getresponse()
    body = answer.read()
    if answer.status != 200:
        raise RuntimeError(f"download: {answer.status} {body[:200]!r}")
    return body


def measure(args, binary: str, label: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"federation-media-{label}-"))
    certificate = federation.make_certificate(workdir)
    args.myelin_bin = binary
    server = federation.FederatingMyelin(args, workdir)
    server.setup_federation(certificate)
    peer = fedpeer.FederationPeer(free_port(), *certificate)
    peer.serve()
    try:
        server.start()
        server.wait_ready()
        media_id, data = upload(server, args.size_mib * 1024 * 1024)
        # The first request also fetches the peer's key: outside the figures.
        first = download(peer, server.server_name, media_id)
        pid = server.proc.pid
        before = status_kib(pid, "VmRSS")
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            for _ in range(ROUNDS):
                bodies = list(pool.map(lambda _: download(peer, server.server_name, media_id),
                                       range(args.clients)))
                if not all(data in body for body in bodies + [first]):
                    raise RuntimeError("a download did not hold the whole file")
        time.sleep(0.5)
        return {
            "build": label,
            "file_mib": args.size_mib,
            "clients": args.clients,
            "rss_before_mib": round(before / 1024, 1),
            "peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
        }
    finally:
        peer.shutdown()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--myelin-bin", default=str(Path(os.environ.get(
        "CARGO_TARGET_DIR", federation.run.REPO / "target")) / "release/myelin"))
    parser.add_argument("--myelin-before-bin", default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    builds = [("before", args.myelin_before_bin)] if args.myelin_before_bin else []
    builds.append(("current", args.myelin_bin))
    for label, binary in builds:
        print(json.dumps(measure(argparse.Namespace(**vars(args)), binary, label)))


if __name__ == "__main__":
    main()

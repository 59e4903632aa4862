#!/usr/bin/env python3
"""Federation figures: two servers of one kind federating on loopback, Myelin
pair against Synapse pair, in alternating rounds on the same machine.

    python3 loadtest/federation.py --kinds myelin,synapse --rounds 2

Each round starts a fresh pair, A and B, named `127.0.0.1:<port>` with
federation over TLS on that port (one self-signed certificate, checks off
on both sides) and the client API on another port, and measures:

1. delivery: `--pairs` senders on A, each in a room with one receiver on B
   (B's user joined over federation); k6's sync_wake scenario with the
   senders talking to A and the receivers long-polling B. Delivery is the
   time B's /sync returned the message minus the sender's send start.
2. catch-up: B is stopped (a split B: its gateways only), A's first sender
   sends `--catchup` messages, B starts again and its user sends one
   message into the room (an inbound
   transaction tells A that B is back: both servers wake the destination's
   queue on it). Timed from that message until B's user can read every
   missed message (/sync, then /messages back to the first: Synapse sends
   only the newest event and leaves the rest to backfill, which paging
   /messages triggers), and until the newest is visible.
3. inbound: a generated server (fedpeer.py) joins the first room on B and
   sends `--inbound` signed messages in transactions of 50, one at a time,
   each once B's user can read the last event of the one before (Synapse
   answers /send before it persists, and drops what queues beyond 100).
   PDUs/s and B's CPU per 1000 PDUs, until the last one is readable.

Both servers run on SQLite with rate limits out of the way (as in run.py),
Synapse's inbound federation limiter (`rc_federation`) too.

The kind `synapse-to-myelin` pairs a Synapse A with a single-process Myelin
B: what Myelin makes of Synapse's traffic, catch-up above all (Synapse sends
only the newest missed event, and B fetches the rest itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run  # noqa: E402  (re-execs under the venv's Python when PyYAML is missing)
from run import (
    MyelinServer, MyelinSplitServer, ProcessGroupSampler, SynapseServer, count, free_port, pin_myelin, run_k6, trend,
    versions, wait_for_quiet,
)
import provision  # noqa: E402
import fedpeer  # noqa: E402

ROOM_VERSION = "10"
FEDERATION_LIMITS = {"rc_federation": {"window_size": 1000, "sleep_limit": 1000000, "sleep_delay": 1,
                                       "reject_limit": 1000000, "concurrent": 1000}}


def make_certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(cert), str(key)


class Federating:
    """Mixed into a run.py server: named after its TLS federation port."""

    def go_offline(self) -> None:
        """Unreachable for other servers, keeping what it stores."""
        self.stop()

    def come_back(self) -> None:
        self.launch()
        self.wait_ready()

    def setup_federation(self, certificate: tuple[str, str]) -> None:
        self.federation_port = free_port()
        self.server_name = f"127.0.0.1:{self.federation_port}"
        self.certificate = certificate

    def federation_settings(self, config: dict) -> None:
        config["listeners"].append({
            "port": self.federation_port, "tls": True, "type": "http",
            "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["federation"], "compress": False}],
        })
        config["tls_certificate_path"], config["tls_private_key_path"] = self.certificate
        config["federation_verify_certificates"] = False
        config["ip_range_whitelist"] = ["127.0.0.1/32"]
        # Synapse checks IP-literal server names against the blacklist alone.
        config["ip_range_blacklist"] = []


class FederatingMyelin(Federating, MyelinServer):
    kind = "myelin"

    def prepare(self) -> None:
        binary = self.binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} missing: cargo build --release -p myelin")
        subprocess.run(
            [str(binary), "generate", "--server-name", self.server_name, "--data-dir", str(self.dir)],
            check=True, stdout=subprocess.DEVNULL,
        )
        self.edit_config(self.dir / "homeserver.yaml", {})

    def customize(self, config: dict) -> None:
        self.federation_settings(config)


class FederatingSynapse(Federating, SynapseServer):
    kind = "synapse"

    def prepare(self) -> None:
        cfg = self.dir / "homeserver.yaml"
        subprocess.run(
            [self.python(), "-m", "synapse.app.homeserver", "--server-name", self.server_name,
             "--config-path", str(cfg), "--data-directory", str(self.dir),
             "--generate-config", "--report-stats=no"],
            check=True, cwd=self.dir, stdout=subprocess.DEVNULL,
        )
        self.edit_config(cfg, {**run.SYNAPSE_EXTRA_LIMITS, **FEDERATION_LIMITS})

    def customize(self, config: dict) -> None:
        # The generated listener serves client and federation; federation moves to TLS.
        for listener in config["listeners"]:
            for resource in listener.get("resources", []):
                resource["names"] = [n for n in resource["names"] if n != "federation"]
        self.federation_settings(config)


class FederatingMyelinSplit(Federating, MyelinSplitServer):
    """scripts/split-up.sh with one replica of each role, federation-api and
    federation-sender included, the gateway serving federation over TLS.

    Offline means its gateways stopped (connections refused, as for a stopped
    server); the workers, database and stream stay, since split-down.sh would
    drop them. Back means each gateway started again as it was: the same
    command, environment and ports."""

    kind = "myelin-split"
    counts = dict(MyelinSplitServer.counts, FEDERATION_APIS="1", FEDERATION_SENDERS="1")

    def go_offline(self) -> None:
        self.stopped_gateways = []
        for key, pid in self.topology.items():
            if not (key.startswith("GATEWAY_") and key.endswith("_PID")):
                continue
            proc = Path(f"/proc/{pid}")
            argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0")
                       if b"=" in item)
            name = self.topology.get(key.replace("_PID", "_NAME"), key)
            # Started on port 0; back on the port it got.
            port = self.topology[key.replace("_PID", "_URL")].rsplit(":", 1)[1]
            env[b"MYELIN_LISTENERS__0__PORT"] = port.encode()
            self.stopped_gateways.append((key, name, argv, env, os.readlink(proc / "cwd")))
            os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 30
            while proc.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.exists():
                os.kill(int(pid), signal.SIGKILL)

    def come_back(self) -> None:
        for key, name, argv, env, cwd in self.stopped_gateways:
            with open(self.split_dir / "logs" / f"{name}.log", "ab") as log:
                child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            start = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
            # split-down.sh stops what the pids file lists.
            with open(self.split_dir / "pids", "a") as pids:
                pids.write(f"{child.pid} {start} gateway {name}\n")
            self.topology[key] = str(child.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                provision.Client(self.base_url, "", "").request("GET", "/_matrix/client/versions")
                return
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind}: the gateways did not come back")

    def extra_env(self) -> dict:
        env_file = self.dir / "federation.env"
        env_file.write_text(
            "MYELIN_TRUSTED_KEY_SERVERS=[]\n"
            "MYELIN_FEDERATION_VERIFY_CERTIFICATES=false\n"
            "MYELIN_IP_RANGE_WHITELIST=['127.0.0.1/32']\n")
        return {
            "SPLIT_SERVER_NAME": self.server_name,
            "SPLIT_FEDERATION_PORT": str(self.federation_port),
            "SPLIT_TLS_CERTIFICATE": self.certificate[0],
            "SPLIT_TLS_KEY": self.certificate[1],
            "SPLIT_ENV_FILE": str(env_file),
        }


PAIRS = {"myelin": FederatingMyelin, "synapse": FederatingSynapse,
         "myelin-split": FederatingMyelinSplit}
# Kinds whose two servers differ: A (the sender) first, then B.
MIXED = {"synapse-to-myelin": (FederatingSynapse, FederatingMyelin)}


def start_pair(args, kind: str, workdir: Path, certificate) -> tuple:
    servers = []
    classes = MIXED.get(kind) or (PAIRS[kind], PAIRS[kind])
    for name, server_class in zip(("a", "b"), classes):
        directory = workdir / name
        directory.mkdir()
        server = server_class(args, directory)
        server.setup_federation(certificate)
        ACTIVE.append(server)
        server.start()
        servers.append(server)
    for server in servers:
        server.wait_ready()
    return tuple(servers)


def join_over_federation(user: provision.Client, room_id: str, via: str) -> None:
    path = f"/_matrix/client/v3/join/{provision.q(room_id)}"
    user.request("POST", path, {}, query={"server_name": via})


def provision_pairs(a, b, size: int) -> dict:
    senders = provision.register_many(a.base_url, a.shared_secret, "fsend", size)
    receivers = provision.register_many(b.base_url, b.shared_secret, "frecv", size)

    def pair(i):
        room = senders[i].request("POST", "/_matrix/client/v3/createRoom",
                                  {"preset": "public_chat", "room_version": ROOM_VERSION})["room_id"]
        join_over_federation(receivers[i], room, a.server_name)
        return room

    rooms = provision.parallel(pair, range(size))
    sinces = provision.parallel(lambda u: u.since(), receivers)
    return {
        "pairs": [
            {"room_id": r, "sender": dict(s.as_user(), base_url=a.base_url),
             "receiver": dict(rc.as_user(), since=since, base_url=b.base_url)}
            for r, s, rc, since in zip(rooms, senders, receivers, sinces)
        ],
    }


def bodies_readable(user: provision.Client, room_id: str, prefix: str, want: int,
                    deadline: float, pages: int | None = None) -> set:
    """Bodies starting with `prefix` that `user` reads paging /messages back from the end
    (at most `pages` pages of 100)."""
    seen: set = set()
    token = None
    read = 0
    while time.monotonic() < deadline and (pages is None or read < pages):
        read += 1
        query = {"dir": "b", "limit": "100"}
        if token:
            query["from"] = token
        page = user.request("GET", f"/_matrix/client/v3/rooms/{provision.q(room_id)}/messages",
                            query=query)
        for event in page.get("chunk", []):
            body = event.get("content", {}).get("body", "")
            if body.startswith(prefix):
                seen.add(body)
        token = page.get("end")
        if len(seen) >= want or not page.get("chunk") or not token:
            break
    return seen


def event_visible(user: provision.Client, room_id: str, event_id: str, deadline: float) -> bool:
    path = f"/_matrix/client/v3/rooms/{provision.q(room_id)}/event/{provision.q(event_id)}"
    while time.monotonic() < deadline:
        try:
            user.request("GET", path)
            return True
        except provision.MatrixError:
            time.sleep(0.02)
    return False


def sample(server) -> ProcessGroupSampler:
    sampler = ProcessGroupSampler(server.root_pid(), server.extra_processes())
    sampler.start()
    return sampler


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def measure_delivery(args, a, b, fixture: dict, workdir: Path, result: dict) -> None:
    fixture_path = workdir / "fixture.json"
    fixture_path.write_text(json.dumps(fixture))
    result["host_busy_before_pct"] = wait_for_quiet(args.quiet_below, args.quiet_wait)
    samplers = sample(a), sample(b)

    class Base:  # run_k6 reads base_url only for BASE_URL; every user carries its own
        base_url = a.base_url

    code, summary, k6_cpu = run_k6(args, Base, "sync_wake", fixture_path, workdir)
    (a_cpu, _), (b_cpu, _) = (s.stop() for s in samplers)
    sent, delivered = count(summary, "events_sent"), count(summary, "events_delivered")
    result.update({
        "k6_exit": code,
        "events_sent": sent,
        "deliveries": delivered,
        "delivery_p50_ms": trend(summary, "delivery_latency", "p(50)"),
        "delivery_p99_ms": trend(summary, "delivery_latency", "p(99)"),
        "send_p99_ms": trend(summary, "send_latency", "p(99)"),
        "sender_cpu_s_per_1k": round(a_cpu / sent * 1000, 2) if sent else None,
        "receiver_cpu_s_per_1k": round(b_cpu / delivered * 1000, 2) if delivered else None,
        "delivery_peak_rss_a_mib": mib(samplers[0].peak_rss_kib),
        "delivery_peak_rss_b_mib": mib(samplers[1].peak_rss_kib),
        "delivery_peak_rss_a_by_program_mib": samplers[0].peak_rss_mib_by_program(),
        "delivery_peak_rss_b_by_program_mib": samplers[1].peak_rss_mib_by_program(),
        "delivery_cpu_s_a_by_program": samplers[0].cpu_by_program(),
        "delivery_cpu_s_b_by_program": samplers[1].cpu_by_program(),
        "k6_cpu_s": round(k6_cpu, 2),
        "errors": count(summary, "request_errors"),
    })


def measure_catch_up(args, a, b, fixture: dict, result: dict) -> None:
    first = fixture["pairs"][0]
    room_id = first["room_id"]
    sender = provision.Client(a.base_url, first["sender"]["token"], first["sender"]["user_id"])
    receiver = provision.Client(b.base_url, first["receiver"]["token"], first["receiver"]["user_id"])
    b.go_offline()
    started = time.monotonic()
    for n in range(args.catchup):
        sender.send_text(room_id, f"missed {n:05d}")
    result["catchup_send_s"] = round(time.monotonic() - started, 1)
    b.come_back()
    samplers = sample(a), sample(b)
    started = time.monotonic()
    receiver.send_text(room_id, "back again")
    deadline = started + args.catchup_timeout
    newest = f"missed {args.catchup - 1:05d}"
    newest_s = None
    seen: set = set()
    while time.monotonic() < deadline:
        # The newest is among the last events: one page, so that waiting for
        # it does not read the whole room over and over on the server timed.
        if newest_s is None and newest in bodies_readable(receiver, room_id, newest, 1, deadline,
                                                          pages=1):
            newest_s = time.monotonic() - started
        if newest_s is not None:
            seen = bodies_readable(receiver, room_id, "missed ", args.catchup, deadline)
            if len(seen) >= args.catchup:
                break
        time.sleep(0.1)
    all_s = time.monotonic() - started if len(seen) >= args.catchup else None
    (a_cpu, _), (b_cpu, _) = (s.stop() for s in samplers)
    result.update({
        "catchup_cpu_a_by_program": samplers[0].cpu_by_program(),
        "catchup_cpu_b_by_program": samplers[1].cpu_by_program(),
        "catchup_newest_s": round(newest_s, 2) if newest_s is not None else None,
        "catchup_all_s": round(all_s, 2) if all_s is not None else None,
        "catchup_readable": len(seen),
        "catchup_cpu_a_s": round(a_cpu, 2),
        "catchup_cpu_b_s": round(b_cpu, 2),
    })


def measure_inbound(args, b, fixture: dict, certificate, result: dict) -> None:
    first = fixture["pairs"][0]
    room_id = first["room_id"]
    receiver = provision.Client(b.base_url, first["receiver"]["token"], first["receiver"]["user_id"])
    peer = fedpeer.FederationPeer(free_port(), *certificate)
    peer.serve()
    try:
        target = fedpeer.Target(peer, b.server_name)
        chain = target.join(room_id, ROOM_VERSION)
        events = chain.messages(args.inbound, "inbound")
        # Both servers fetch the generator's key on the first transaction; do it before timing.
        status, _ = target.send_transaction([events[0][1]])
        if status != 200 or not event_visible(receiver, room_id, events[0][0], time.monotonic() + 60):
            raise RuntimeError(f"first transaction: {status}, or its event never became readable")
        events = events[1:]
        result["host_busy_before_inbound_pct"] = wait_for_quiet(args.quiet_below, args.quiet_wait)
        sampler = sample(b)
        refused = 0
        answered = 0.0
        started = time.monotonic()
        for offset in range(0, len(events), 50):
            batch = events[offset:offset + 50]
            sent = time.monotonic()
            status, answer = target.send_transaction([event for _id, event in batch])
            answered += time.monotonic() - sent
            if status != 200:
                raise RuntimeError(f"/send: {status} {answer}")
            refused += sum(1 for r in answer.get("pdus", {}).values() if r.get("error"))
            # Synapse answers once PDUs are staged, processes them afterwards and
            # drops staged events beyond 100 (it fetches them later): the next
            # transaction goes once B's user can read this one's last event.
            if not event_visible(receiver, room_id, batch[-1][0], started + 600):
                raise RuntimeError(f"PDU {offset + len(batch)} never became readable on B")
        elapsed = time.monotonic() - started
        cpu, _ = sampler.stop()
        last = f"inbound {args.inbound - 1}"
        readable = last in bodies_readable(receiver, room_id, last, 1, time.monotonic() + 30)
        result.update({
            "inbound_answered_s": round(answered, 2),
            "inbound_readable_s": round(elapsed, 2),
            "inbound_pdus_per_s": round(len(events) / elapsed, 1),
            "inbound_cpu_s_per_1k": round(cpu / len(events) * 1000, 3),
            "inbound_refused": refused,
            "inbound_last_readable": readable,
            # /event and /get_missing_events B asked of the generator: fetched, not pushed.
            "inbound_requests_back": peer.requests_in,
            "inbound_peak_rss_b_mib": mib(sampler.peak_rss_kib),
            "inbound_peak_rss_b_by_program_mib": sampler.peak_rss_mib_by_program(),
            "inbound_cpu_s_b_by_program": sampler.cpu_by_program(),
        })
    finally:
        peer.shutdown()


def one_round(args, kind: str, round_no: int, scratch: Path) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"federation-{kind}-", dir=scratch))
    result = {"kind": kind, "round": round_no, "ok": False}
    certificate = make_certificate(workdir)
    servers = ()
    try:
        servers = start_pair(args, kind, workdir, certificate)
        a, b = servers
        t0 = time.monotonic()
        fixture = provision_pairs(a, b, args.pairs)
        result["provision_s"] = round(time.monotonic() - t0, 1)
        measure_delivery(args, a, b, fixture, workdir, result)
        measure_catch_up(args, a, b, fixture, result)
        measure_inbound(args, b, fixture, certificate, result)
        result["ok"] = result["k6_exit"] == 0 and a.alive() and b.alive()
    except Exception as err:  # one failed round must not lose the others
        result["failure"] = f"{type(err).__name__}: {err}"
    finally:
        for server in servers:
            server.stop()
            ACTIVE.remove(server)
        if not result["ok"]:
            result["log_tails"] = {s.server_name: s.log_tail() for s in servers}
        if args.keep:
            result["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


ACTIVE: list = []

ROWS = [
    ("delivery_p50_ms", "delivery p50 (ms)"),
    ("delivery_p99_ms", "delivery p99 (ms)"),
    ("send_p99_ms", "send p99 on A (ms)"),
    ("sender_cpu_s_per_1k", "A's CPU s / 1000 messages sent (delivery)"),
    ("receiver_cpu_s_per_1k", "B's CPU s / 1000 messages received (delivery)"),
    ("delivery_peak_rss_a_mib", "A's peak RSS, delivery (MiB)"),
    ("delivery_peak_rss_b_mib", "B's peak RSS, delivery (MiB)"),
    ("catchup_newest_s", "catch-up: newest missed message visible (s)"),
    ("catchup_all_s", "catch-up: every missed message readable (s)"),
    ("catchup_readable", "catch-up: missed messages readable at the end"),
    ("catchup_cpu_b_s", "catch-up: B's CPU s"),
    ("inbound_pdus_per_s", "inbound PDUs/s on /send"),
    ("inbound_cpu_s_per_1k", "B's CPU s / 1000 inbound PDUs"),
    ("inbound_peak_rss_b_mib", "B's peak RSS, inbound (MiB)"),
    ("inbound_refused", "inbound PDUs refused"),
    ("errors", "k6 request errors"),
]


def markdown(runs: list[dict], kinds: list[str]) -> str:
    ratio = f" | {kinds[0]} / {kinds[1]} |" if len(kinds) == 2 else " |"
    lines = ["| metric | " + " | ".join(kinds) + ratio,
             "|---" * (len(kinds) + 1 + (len(kinds) == 2)) + "|"]
    for key, label in ROWS:
        values = []
        for kind in kinds:
            got = [r[key] for r in runs if r["kind"] == kind and r.get("ok") and r.get(key) is not None]
            values.append(round(statistics.median(got), 2) if got else None)
        cells = ["—" if v is None else str(v) for v in values]
        if len(kinds) == 2:
            a, b = values
            cells.append(str(round(a / b, 3)) if a is not None and b else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="myelin,synapse")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=10, help="sender/receiver pairs for delivery")
    parser.add_argument("--duration", default="20s", help="k6 duration of the delivery phase")
    parser.add_argument("--catchup", type=int, default=1000, help="messages B misses")
    parser.add_argument("--catchup-timeout", type=float, default=600)
    parser.add_argument("--inbound", type=int, default=2000, help="PDUs the generated server sends")
    parser.add_argument("--sync-timeout-ms", type=int, default=10000)
    parser.add_argument("--send-interval-ms", type=int, default=500)
    parser.add_argument("--quiet-below", type=float, default=15)
    parser.add_argument("--quiet-wait", type=float, default=120)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--myelin-bin", default=str(Path(os.environ.get(
        "CARGO_TARGET_DIR", run.REPO / "target")) / "release/myelin"))
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222",
                        help="for myelin-split")
    parser.add_argument("--pg-host", default="127.0.0.1", help="for myelin-split")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--out", default="federation-results.json")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    for kind in kinds:
        if kind not in PAIRS and kind not in MIXED:
            sys.exit(f"unknown kind {kind}: one of {', '.join([*PAIRS, *MIXED])}")
    scratch = Path(tempfile.mkdtemp(prefix="federation-bench-"))
    info = {"versions": versions(), "args": vars(args).copy()}
    if "myelin-split" in kinds:
        # The worker binaries sit beside the myelin binary of the build.
        args.split_bin_dir = str(Path(args.myelin_bin).parent)
        run.pin_split_binaries(args, scratch)
    if "myelin" in kinds or "synapse-to-myelin" in kinds:
        info.update(pin_myelin(args, scratch))

    def stop_all(*_):
        for server in list(ACTIVE):
            server.stop()
        sys.exit(130)

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    runs = []
    try:
        for round_no in range(1, args.rounds + 1):
            for kind in kinds:
                print(f"round {round_no}: {kind} pair ...", file=sys.stderr, flush=True)
                result = one_round(args, kind, round_no, scratch)
                print(json.dumps(result), file=sys.stderr, flush=True)
                runs.append(result)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    Path(args.out).write_text(json.dumps({"info": info, "runs": runs}, indent=2))
    print(markdown(runs, kinds))


if __name__ == "__main__":
    main()

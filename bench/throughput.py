"""Throughput of the whole path, side by side: smtp-source -> private Postfix -> smtp-sink.

Six configurations run at once, each behind a Postfix of its own (the
contrib main.cf settings, smtpd on a free loopback port, relaying to one
smtp-sink on loopback), and are measured in turn:

A. bare Postfix (no milter);
B. Postfix + bench/null_milter.py, a pymilter milter that does nothing (the floor);
C. Postfix + osfmilter with every policy check on, on SQLite: authorization,
   size, recipients, rate, monthly volume, state, SPF against a local DNS server;
D. the same on PostgreSQL (a database of its own, dropped at the end);
E. C plus a real clamd and a real spamd;
F. Postfix + rspamd's own milter (its proxy worker, ``milter = yes``, self_scan);
G. C with DKIM signing, an RSA 2048 key for the sending domain (not in the default run);
H. the same with an Ed25519 key (``--configs ABCGH`` measures signing's cost).

Each measurement is one ``smtp-source -s 20 -m N -l SIZE`` run; it lasts from
smtp-source's start until the Postfix queue is empty again, and every message
must have reached the sink (counted by smtp-sink and by Postfix's log). Rounds
alternate the configurations in rotating order, and the report gives medians
over rounds and paired per-round ratios. Also measured: the milter process's
CPU time per message (/proc/PID/stat, all threads), its peak RSS (VmHWM), the
milter's own per-stage latency (its Prometheus histograms, before/after), and
the growth of osfmilter's peak RSS for one 50 MB message (with clamd).

Run from the repository root::

    .venv/bin/python bench/throughput.py            # full run, 6-9 minutes on 2 cores
    .venv/bin/python bench/throughput.py --quick    # smoke run, under 2 minutes

``--sqlite-pool-open`` starts osfmilter with its SQLite connections never
closed: as shipped, closing one from a libmilter thread can crash the milter
(bench/RESULTS.md explains it), and a crashed round counts as an error.

The full run writes its figures into bench/RESULTS.md (between markers in the
section "`throughput.py`: the whole path, side by side"); ``--no-results``
skips that. The exit status is 1 if any measurement saw an error (a refusal, a
deferral, a lost message, a traceback in a milter's log), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, text

from osfmilter.config import Config, RegistrationSection
from osfmilter.dkim.keys import KeyFiles, generate
from osfmilter.dkim.signer import Algorithm
from osfmilter.storage import admin
from osfmilter.storage.db import make_engine
from osfmilter.storage.dkim import create_key
from osfmilter.storage.domains import add_domain
from osfmilter.storage.store import SqlStore
from tests.harness.clamd import ClamdProcess
from tests.harness.contrib import contrib_main_cf
from tests.harness.database import reset_database, scratch_database
from tests.harness.dnsserver import DnsServer
from tests.harness.milter import MilterProcess
from tests.harness.ports import free_port
from tests.harness.postfix import PostfixInstance
from tests.harness.rspamd import RspamdProcess
from tests.harness.spamd import SpamdProcess
from tests.harness.spfzone import RELAY_V4, ZONE

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "OSFMILTER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# rspamd's hyperscan cache, kept between runs: a warm start takes seconds, a cold one a minute.
RSPAMD_CACHE = Path("/var/tmp/osfmilter-bench-rspamd")  # noqa: S108 - root-owned cache
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## `throughput.py`: the whole path, side by side"
BEGIN, END = "<!-- throughput.py results: begin -->", "<!-- throughput.py results: end -->"

SENDER = "bench@pass.example"  # pass.example's SPF record includes the relay's address
SCANNED_DOMAIN = "pass.example"
RECIPIENT = "rcpt@sink.example"
HELO = "client.pass.example"
CLIENT = "127.0.0.1"  # smtp-source connects from here: the registered customer server
CONCURRENCY = 20
BIG_MESSAGE = 52_000_000  # smtp-source payload; with its headers just under 50 MiB
WARMUP = 40

CONFIGS = {
    "A": "bare Postfix",
    "B": "null milter",
    "C": "osfmilter, SQLite",
    "D": "osfmilter, PostgreSQL",
    "E": "osfmilter + clamd + spamd",
    "F": "rspamd milter (proxy)",
    "G": "osfmilter, SQLite, DKIM RSA 2048",
    "H": "osfmilter, SQLite, DKIM Ed25519",
}
OSF = ("C", "D", "E", "G", "H")
DKIM_ALGORITHMS: dict[str, Algorithm] = {"G": "rsa-sha256", "H": "ed25519-sha256"}
STAGES = ("mail", "rcpt", "body", "eom")
# smtp-source messages per measurement. E waits for spamd (the harness runs 2
# children; here ~0.3 s of CPU per 10 KB message, ~1.3 s per 1 MB), so it gets
# far fewer messages; 1 MB gets 150 so that the whole run stays under 10 minutes.
FULL_COUNTS = {"10 KB": {"E": 60, "*": 2000}, "1 MB": {"E": 10, "*": 150}}
QUICK_COUNTS = {"10 KB": {"E": 20, "*": 300}, "1 MB": {"E": 4, "*": 20}}
PAYLOAD = {"10 KB": 10_240, "1 MB": 1_048_576}

MILTER_POLICY = """
[plans.paid]
rate_known = 10000000
rate_unknown = 10000000
monthly_volume_limited = true
monthly_volume_base = 1000000000000000
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# /proc ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def cpu_ticks(pid: int, system_only: bool = False) -> int:
    """utime + stime of the whole process (all threads, dead ones too) + reaped children."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0
    # After "(comm)": state ppid ... utime(11) stime(12) cutime(13) cstime(14).
    return sum(int(fields[i]) for i in ((12, 14) if system_only else (11, 12, 13, 14)))


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def with_descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def cpu_sample(pids: Sequence[int], system_only: bool = False) -> dict[int, int]:
    return {pid: cpu_ticks(pid, system_only) for pid in pids}


def cpu_ms(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU milliseconds between two samples (processes that exited meanwhile are lost)."""
    ticks = sum(value - before.get(pid, 0) for pid, value in after.items())
    return ticks * 1000 / CLK_TCK


def status_kib(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], total


# Prometheus histograms ----------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Histogram:
    """Cumulative bucket counts (upper bound -> count), sum and count."""

    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(
            {le: v - other.buckets.get(le, 0.0) for le, v in self.buckets.items()},
            self.total - other.total,
            self.count - other.count,
        )

    def plus(self, other: Histogram) -> Histogram:
        bounds = set(self.buckets) | set(other.buckets)
        return Histogram(
            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in bounds},
            self.total + other.total,
            self.count + other.count,
        )

    def mean_ms(self) -> float:
        return self.total / self.count * 1000 if self.count else math.nan

    def quantile_ms(self, q: float) -> float:
        """Like PromQL's histogram_quantile: linear within the bucket. +Inf: its lower bound."""
        ordered = sorted(self.buckets.items())
        if not ordered or ordered[-1][1] <= 0:
            return math.nan
        rank = q * ordered[-1][1]
        lower, below = 0.0, 0.0
        for bound, cumulative in ordered:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower * 1000
                if cumulative == below:
                    return bound * 1000
                return (lower + (bound - lower) * (rank - below) / (cumulative - below)) * 1000
            lower, below = bound, cumulative
        return lower * 1000


def scrape(url: str, metric: str, label: str) -> dict[str, Histogram]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    found: dict[str, Histogram] = {}
    for line in body.splitlines():
        match = _SAMPLE.match(line)
        if match is None or not match.group(1).startswith(metric):
            continue
        name, labels_text, value = match.groups()
        labels = dict(_LABEL.findall(labels_text or ""))
        key = labels.get(label)
        if key is None:
            continue
        histogram = found.setdefault(key, Histogram())
        if name == metric + "_bucket":
            histogram.buckets[float(labels["le"])] = float(value)
        elif name == metric + "_sum":
            histogram.total = float(value)
        elif name == metric + "_count":
            histogram.count = float(value)
    return found


def delta(after: dict[str, Histogram], before: dict[str, Histogram]) -> dict[str, Histogram]:
    return {key: value.minus(before.get(key, Histogram())) for key, value in after.items()}


# The daemons ----------------------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink on loopback, counting the messages it is given (``-c``)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.output = workdir / "smtp-sink.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        command = ["smtp-sink", "-c"]
        if os.geteuid() == 0:
            command += ["-u", "postfix"]
        command += [f"127.0.0.1:{self.port}", "1024"]
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(64).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
            time.sleep(0.05)
        raise RuntimeError(f"smtp-sink did not answer on {self.port}")

    def delivered(self) -> int:
        """Messages received so far: the last ``mesg=N`` of smtp-sink's running counter."""
        counts = re.findall(rb"mesg=(\d+)", self.output.read_bytes()[-4096:])
        return int(counts[-1]) if counts else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class RspamdMilter(RspamdProcess):
    """The harness's offline rspamd, plus its proxy worker in milter mode on a free port.

    The proxy scans itself (``self_scan``), as rspamd's own milter setups do.
    DNS goes to the benchmark's loopback server, which answers at once.
    """

    def __init__(self, workdir: Path, nameserver: str) -> None:
        super().__init__(workdir)
        self.proxy_port = free_port()
        self.nameserver = nameserver

    @property
    def socket_spec(self) -> str:
        return f"inet:{self.proxy_port}@127.0.0.1"

    def _configure(self) -> list[str]:
        variables = super()._configure()
        etc = self.workdir / "etc"
        (etc / "override.d" / "worker-proxy.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.proxy_port}";\n'
            "milter = yes;\ntimeout = 120s;\n"
            'upstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n'
            "count = 1;\n"
        )
        (etc / "local.d" / "options.inc").write_text(
            f'dns {{ nameserver = ["{self.nameserver}"]; timeout = 0.2s; retransmits = 1; }}\n'
            "local_addrs = [];\n"
        )
        return variables

    def start(self, timeout: float = 180.0) -> None:
        # Keep the hyperscan cache (DBDIR = run/) across runs, drop the rest.
        for stale in ("rspamd.out", "run/rspamd.log", "run/rspamd.pid"):
            (self.workdir / stale).unlink(missing_ok=True)
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.proxy_port), timeout=1),
            ):
                break
            time.sleep(0.1)
        self.wait_compiled(deadline)

    def wait_compiled(self, deadline: float) -> None:
        """A cold start compiles hyperscan in the background: wait until it is done."""
        assert self.process is not None
        while time.monotonic() < deadline:
            pids = with_descendants(self.process.pid)
            helpers = [p for p in pids if b"hs_helper" in cmdline(p)]
            before = cpu_sample(helpers)
            time.sleep(1.0)
            if not helpers or cpu_ms(before, cpu_sample(helpers)) < 50:
                return
        log("  rspamd: hyperscan still compiling at the deadline")

    def pids(self) -> list[int]:
        return with_descendants(self.process.pid) if self.process is not None else []


# ``python -c`` code that runs ``osfmilter`` with every SQLite engine's connections kept
# open: a pool of 64, no overflow connections that are closed again on check-in.
POOLED_LAUNCH = """
import sys
import sqlalchemy.pool
import osfmilter.storage.db as db
create = getattr(db, "create_engine", None)
if create is None:
    sys.exit("osfmilter.storage.db.create_engine is gone: --sqlite-pool-open needs updating")
def keep_open(url, **options):
    if str(url).startswith("sqlite"):
        options.update(poolclass=sqlalchemy.pool.QueuePool, pool_size=64, max_overflow=0)
    return create(url, **options)
db.create_engine = keep_open
from osfmilter.cli import main
sys.exit(main(sys.argv[1:]))
"""


class PooledMilterProcess(MilterProcess):
    """``osfmilter run`` as MilterProcess starts it, but with SQLite connections kept open.

    Closing a pysqlite connection that has Python functions registered
    (SQLAlchemy registers ``regexp`` and ``floor``) runs CPython's
    destructor callback, which calls ``PyGILState_Ensure``; in a libmilter
    thread, under pymilter's own thread states, that crashes the process.
    The default pool closes its overflow connections, so more than 5
    concurrent sessions crash osfmilter on SQLite. This launcher is for
    measuring throughput around that bug; it changes nothing else.
    """

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", POOLED_LAUNCH, "--config", str(self.config_path), "run"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milter exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.1)
        raise RuntimeError(f"milter did not listen on {self.port}:\n{self.log()}")


class NullMilter:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "null-milter.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_spec(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "null_milter.py"), self.socket_spec],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"null milter exited: {self.log_path.read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.1)
        raise RuntimeError("null milter did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def postgres_database(admin_url: str) -> AbstractContextManager[str]:
    """A database of its own, dropped at the end however the benchmark ends."""
    return scratch_database(admin_url, "osf_bench")


def prepare_database(url: str) -> Engine:
    """An empty schema with the bench customer: paid plan, pass.example, server 127.0.0.1."""
    engine = make_engine(url, Config().database.timeout)
    reset_database(engine)
    now = datetime.now(UTC)
    with SqlStore(engine).session() as session:
        admin.add_customer(session, "bench", "paid", now)
        add_domain(session, SCANNED_DOMAIN, "bench", now)
        admin.add_server(session, CLIENT, "bench", RegistrationSection(allow_non_global=True), now)
    return engine


def add_signing_key(engine: Engine, directory: Path, algorithm: Algorithm) -> None:
    """An active DKIM key for the bench's domain, as ``osfmilter dkim keygen`` makes it."""
    key = generate(algorithm)
    selector = "bench"
    KeyFiles(directory).write(SCANNED_DOMAIN, selector, key.private_pem)
    with SqlStore(engine).session() as session:
        create_key(session, SCANNED_DOMAIN, selector, algorithm, key.public_key, datetime.now(UTC))


# One configuration behind its Postfix ----------------------------------------------------


@dataclass
class Peer:
    key: str
    postfix: PostfixInstance
    service: MilterProcess | NullMilter | RspamdMilter | None = None
    metrics_url: str = ""
    log_path: Path | None = None
    engine: Engine | None = None  # osfmilter's database: the rate window is emptied
    scanner_pids: Callable[[], list[int]] | None = None
    database_pids: Callable[[], list[int]] | None = None

    @property
    def title(self) -> str:
        return f"{self.key}. {CONFIGS[self.key]}"

    def process(self) -> subprocess.Popen[bytes] | None:
        return self.service.process if self.service is not None else None

    def pids(self) -> list[int]:
        """The processes whose CPU time is the milter's (all of rspamd's)."""
        if isinstance(self.service, RspamdMilter):
            return self.service.pids()
        process = self.process()
        return [process.pid] if process is not None else []

    def rss_pid(self) -> int | None:
        """The process whose peak RSS is reported (rspamd: its proxy worker)."""
        if isinstance(self.service, RspamdMilter):
            proxies = [p for p in self.service.pids() if b"proxy" in cmdline(p)]
            return proxies[0] if proxies else None
        process = self.process()
        return process.pid if process is not None else None

    def exit_status(self) -> int | None:
        """None while the milter runs (or there is none), else how it ended."""
        process = self.process()
        return process.poll() if process is not None else None


@dataclass
class Sample:
    key: str
    size: str
    round: int
    messages: int
    seconds: float
    delivered_sink: int
    delivered_log: int
    cpu_ms: float
    system_cpu_ms: float  # the kernel's share of cpu_ms
    scanner_cpu_ms: float = math.nan
    database_cpu_ms: float = math.nan
    busy: float = math.nan  # share of the machine's CPU busy during the measurement
    callbacks: dict[str, Histogram] = field(default_factory=dict)
    scans: dict[str, Histogram] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered_sink / self.seconds if self.seconds > 0 else math.nan


def queue_is_empty(postfix: PostfixInstance) -> bool:
    """Cheaper than PostfixInstance.queue_is_empty: stops at the first queue file found."""
    todo = [postfix.queue_dir / d for d in ("maildrop", "incoming", "active", "deferred", "hold")]
    while todo:
        directory = todo.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            else:
                return False
    return True


def wait_queue_empty(postfix: PostfixInstance, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_is_empty(postfix):
            return True
        time.sleep(0.02)
    return False


def read_from(path: Path | None, offset: int) -> str:
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def size_of(path: Path | None) -> int:
    return path.stat().st_size if path is not None and path.exists() else 0


MAILLOG_TROUBLE = re.compile(
    r"milter-reject|milter-discard|reject:|status=(?:deferred|bounced|expired)|"
    r"warning:|fatal:|panic:|error:"
)
# cleanup's "file system clock is N seconds ahead of local clock" (and its
# "resetting file time stamps" follow-up) is this VM's clock against the
# disk's timestamps, not anything a milter did.
MAILLOG_HARMLESS = re.compile(r"file system clock is \d+ seconds? ahead|resetting file time stamps")
MILTER_TROUBLE = re.compile(
    r"Traceback|Fatal Python error|\bERROR\b|\bWARNING\b|\bCRITICAL\b|action=(?!accept)"
)


class Bench:
    def __init__(self, settings: Settings, sink: SmtpSink) -> None:
        self.settings = settings
        self.sink = sink

    def empty_rate_window(self, peer: Peer) -> None:
        """Outside the timing: every measurement starts as a sender idle for 5 minutes."""
        if peer.engine is None:
            return
        with peer.engine.begin() as connection:
            connection.execute(text("DELETE FROM rate_slots"))
        if peer.engine.dialect.name == "postgresql":
            with peer.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                connection.execute(text("VACUUM ANALYZE rate_slots"))

    def died(self, peer: Peer, status: int, pids: list[int]) -> str:
        """Report a milter that ended during a measurement, and start it again."""
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
        lines = [
            line.strip() for line in kernel.splitlines() if any(f"[{pid}]" in line for pid in pids)
        ]
        tail = [
            line
            for line in read_from(peer.log_path, 0).splitlines()
            if "osfmilter.decision" not in line
        ][-12:]
        log(f"  {peer.title}: the milter died ({how}); restarting it")
        assert peer.service is not None
        peer.service.stop()
        peer.service.start()
        kernel_text = f"kernel: {' | '.join(lines[-2:])}; " if lines else ""
        return f"the milter process died ({how}); {kernel_text}its log ends: {' | '.join(tail)}"

    def send(
        self,
        peer: Peer,
        messages: int,
        payload: int,
        label: str,
        round_number: int,
        sessions: int = 0,
    ) -> Sample:
        postfix = peer.postfix
        errors: list[str] = []
        status = peer.exit_status()
        if status is not None:  # it died between measurements
            errors.append(self.died(peer, status, peer.pids()))
        if not wait_queue_empty(postfix, 60):
            raise RuntimeError(f"{peer.title}: queue not empty before a measurement")
        self.empty_rate_window(peer)
        maillog_at, milter_log_at = size_of(postfix.maillog_path), size_of(peer.log_path)
        sink_before = self.sink.delivered()
        callbacks_before: dict[str, Histogram] = {}
        scans_before: dict[str, Histogram] = {}
        if peer.metrics_url:
            callbacks_before = scrape(
                peer.metrics_url, "osfmilter_callback_duration_seconds", "stage"
            )
            scans_before = scrape(peer.metrics_url, "osfmilter_scan_duration_seconds", "scanner")
        pids = peer.pids()
        scanner_pids = peer.scanner_pids() if peer.scanner_pids else []
        database_pids = peer.database_pids() if peer.database_pids else []
        cpu_before, system_before = cpu_sample(pids), cpu_sample(pids, system_only=True)
        scanners_before, database_before = cpu_sample(scanner_pids), cpu_sample(database_pids)
        busy_before = machine_ticks()
        sessions = sessions or self.settings.sessions
        command = [
            "smtp-source",
            "-4",
            "-A",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(payload),
            "-M",
            HELO,
            "-f",
            SENDER,
            "-t",
            RECIPIENT,
            f"127.0.0.1:{postfix.smtpd_port}",
        ]
        started = time.perf_counter()
        try:
            source = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=self.settings.timeout
            )
        except subprocess.TimeoutExpired:
            errors.append(f"smtp-source did not finish within {self.settings.timeout} s")
        else:
            if source.returncode != 0 or source.stderr.strip():
                said = Counter(line.strip() for line in source.stderr.splitlines() if line.strip())
                errors.append(
                    f"smtp-source exit {source.returncode}, stderr: "
                    + "; ".join(f"{count} × {line[:160]}" for line, count in said.most_common(3))
                )
        if not wait_queue_empty(postfix, self.settings.timeout):
            errors.append("queue not empty within the time limit")
        seconds = time.perf_counter() - started
        cpu_after = cpu_sample(peer.pids())
        system_after = cpu_sample(peer.pids(), system_only=True)
        scanners_after = cpu_sample(peer.scanner_pids() if peer.scanner_pids else [])
        database_after = cpu_sample(peer.database_pids() if peer.database_pids else [])
        busy_after = machine_ticks()
        sample = Sample(
            peer.key,
            label,
            round_number,
            messages,
            seconds,
            0,
            0,
            cpu_ms(cpu_before, cpu_after) / messages,
            cpu_ms(system_before, system_after) / messages,
        )
        status = peer.exit_status()
        if status is not None:
            errors.append(self.died(peer, status, pids))
        if scanner_pids:
            sample.scanner_cpu_ms = cpu_ms(scanners_before, scanners_after) / messages
        if database_pids or peer.database_pids:
            sample.database_cpu_ms = cpu_ms(database_before, database_after) / messages
        total = busy_after[1] - busy_before[1]
        sample.busy = (busy_after[0] - busy_before[0]) / total if total else math.nan
        if peer.metrics_url and status is None:
            sample.callbacks = delta(
                scrape(peer.metrics_url, "osfmilter_callback_duration_seconds", "stage"),
                callbacks_before,
            )
            sample.scans = delta(
                scrape(peer.metrics_url, "osfmilter_scan_duration_seconds", "scanner"), scans_before
            )
        # Postfix's log and the sink's counter may trail the queue by a moment.
        deadline = time.monotonic() + 10
        maillog = ""
        while True:
            maillog = read_from(postfix.maillog_path, maillog_at)
            sample.delivered_log = maillog.count("status=sent")
            sample.delivered_sink = self.sink.delivered() - sink_before
            done = min(sample.delivered_log, sample.delivered_sink) >= messages
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if sample.delivered_sink != messages or sample.delivered_log != messages:
            errors.append(
                f"delivered {sample.delivered_sink} (sink) / {sample.delivered_log} "
                f"(Postfix log) of {messages}"
            )
        trouble = [
            line
            for line in maillog.splitlines()
            if MAILLOG_TROUBLE.search(line) and not MAILLOG_HARMLESS.search(line)
        ]
        if trouble:
            errors.append(f"{len(trouble)} Postfix log line(s) like: " + " | ".join(trouble[:3]))
        milter_log = read_from(peer.log_path, milter_log_at)
        bad = [line for line in milter_log.splitlines() if MILTER_TROUBLE.search(line)]
        if bad:
            errors.append(f"{len(bad)} milter log line(s) like: " + " | ".join(bad[:3]))
        sample.errors = errors
        return sample


# Settings and the run --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    configs: tuple[str, ...]
    sizes: tuple[str, ...]
    rounds: int
    counts: dict[str, dict[str, int]]
    timeout: float
    big_message: bool
    sessions: int
    sqlite_pool_open: bool
    profile: bool
    results: bool
    quick: bool
    keep: bool
    pg_admin_url: str
    command: str

    def messages(self, size: str, key: str) -> int:
        counts = self.counts[size]
        return counts.get(key, counts["*"])


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 300 / 20 messages (under 2 minutes)",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    parser.add_argument("--configs", default="ABCDEF", help="which of A-H (default %(default)s)")
    parser.add_argument(
        "--sizes",
        default="10 KB,1 MB",
        help="comma-separated, of: 10 KB, 1 MB (default %(default)s)",
    )
    parser.add_argument(
        "--messages", type=int, help="messages per 10 KB measurement for A-D, F (default 2000)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=CONCURRENCY,
        help="smtp-source's parallel sessions (default %(default)s)",
    )
    parser.add_argument("--no-big", action="store_true", help="skip the 50 MB message")
    parser.add_argument(
        "--sqlite-pool-open",
        action="store_true",
        help="start osfmilter with its SQLite connections never closed (a 64-connection "
        "pool, no overflow): works around the crash on closing one (see bench/RESULTS.md)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds, py-spy one extra C 10 KB batch (not counted)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    # --no-readme and --readme: their names from when the results were in bench/README.md.
    parser.add_argument(
        "--no-results", "--no-readme", action="store_true", help="do not touch bench/RESULTS.md"
    )
    parser.add_argument(
        "--results", "--readme", action="store_true", help="write bench/RESULTS.md even if quick"
    )
    parser.add_argument(
        "--pg-url", default=PG_ADMIN_URL, help="PostgreSQL admin URL (env OSFMILTER_BENCH_PG)"
    )
    args = parser.parse_args(argv)
    configs = tuple(c for c in args.configs.upper() if c in CONFIGS)
    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    if not configs or any(s not in PAYLOAD for s in sizes):
        parser.error("unknown configuration or size")
    counts = {size: dict(c) for size, c in (QUICK_COUNTS if args.quick else FULL_COUNTS).items()}
    if args.messages:
        counts["10 KB"]["*"] = args.messages
    rounds = args.rounds or (1 if args.quick else 3)
    shown = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return Settings(
        configs=configs,
        sizes=sizes,
        rounds=rounds,
        counts=counts,
        timeout=300.0,
        big_message=not args.no_big,
        sessions=args.sessions,
        sqlite_pool_open=args.sqlite_pool_open,
        profile=args.profile,
        results=not args.no_results and (args.results or not args.quick),
        quick=args.quick,
        keep=args.keep,
        pg_admin_url=args.pg_url,
        command=f".venv/bin/python bench/throughput.py {shown}".strip(),
    )


def osf_config(metrics_port: int, nameserver: str, extra: str = "") -> str:
    return (
        MILTER_POLICY
        + f'[spf]\noutbound_ips = ["{RELAY_V4}"]\nnameservers = ["{nameserver}"]\n'
        + f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        + extra
    )


def start_peers(
    settings: Settings, stack: ExitStack, scratch: Path, sink: SmtpSink, dns: DnsServer
) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    main_cf = contrib_main_cf()

    def postfix(key: str, milter: str | None) -> PostfixInstance:
        instance = PostfixInstance(
            scratch / f"postfix-{key}",
            relay_port=sink.port,
            milter=milter,
            extra_main_cf=main_cf,
            name=f"osf-bench-{key.lower()}",
        )
        instance.start()
        stack.callback(instance.stop)
        return instance

    def osfmilter(key: str, url: str, extra: str = "") -> Peer:
        engine = prepare_database(url)
        stack.callback(engine.dispose)
        port = free_port()
        kind = PooledMilterProcess if settings.sqlite_pool_open else MilterProcess
        workdir = scratch / f"milter-{key}"
        if key in DKIM_ALGORITHMS:
            # The milter's state_dir is its workdir: the keys go to <workdir>/dkim.
            add_signing_key(engine, workdir / "dkim", DKIM_ALGORITHMS[key])
        milter = kind(workdir, url, extra_config=osf_config(port, dns.nameserver, extra))
        milter.start()
        stack.callback(milter.stop)
        return Peer(
            key,
            postfix(key, milter.socket_spec),
            milter,
            metrics_url=f"http://127.0.0.1:{port}/metrics",
            log_path=milter.log_path,
            engine=engine,
        )

    for key in settings.configs:
        log(f"starting {key}. {CONFIGS[key]}")
        if key == "A":
            peers[key] = Peer(key, postfix(key, None))
        elif key == "B":
            null = NullMilter(scratch)
            null.start()
            stack.callback(null.stop)
            peers[key] = Peer(key, postfix(key, null.socket_spec), null, log_path=null.log_path)
        elif key in ("C", *DKIM_ALGORITHMS):
            peers[key] = osfmilter(key, f"sqlite:///{scratch}/{key.lower()}.sqlite3")
        elif key == "D":
            url = stack.enter_context(postgres_database(settings.pg_admin_url))
            database = url.rsplit("/", 1)[1].encode()
            peer = osfmilter(key, url)

            def backends(name: bytes = database) -> list[int]:
                return [
                    p
                    for p in all_pids()
                    if cmdline(p).startswith(b"postgres: ") and b" " + name + b" " in cmdline(p)
                ]

            peer.database_pids = backends
            peers[key] = peer
        elif key == "E":
            clamd = ClamdProcess(scratch / "clamd")
            clamd.start()
            stack.callback(clamd.stop)
            spamd = SpamdProcess(scratch / "spamd")
            spamd.start()
            stack.callback(spamd.stop)
            extra = (
                f'[clamav]\naddress = "{clamd.socket_path}"\ntimeout = 120\n'
                f'[spam]\nbackend = "spamassassin"\naddress = "{spamd.address}"\n'
                "timeout = 120\n"
            )
            peer = osfmilter(key, f"sqlite:///{scratch}/e.sqlite3", extra)
            clamd_process, spamd_process = clamd.process, spamd.process
            assert clamd_process is not None and spamd_process is not None
            peer.scanner_pids = lambda clamd_pid=clamd_process.pid, spamd_pid=spamd_process.pid: [
                clamd_pid,
                *with_descendants(spamd_pid),
            ]
            peers[key] = peer
        elif key == "F":
            RSPAMD_CACHE.mkdir(parents=True, exist_ok=True)
            RSPAMD_CACHE.chmod(0o755)
            rspamd = RspamdMilter(RSPAMD_CACHE, dns.nameserver)
            started = time.monotonic()
            rspamd.start()
            stack.callback(rspamd.stop)
            log(f"  rspamd ready in {time.monotonic() - started:.1f} s")
            peers[key] = Peer(key, postfix(key, rspamd.socket_spec), rspamd)
    return peers


@dataclass
class BigMessage:
    config: str
    size: int
    idle_rss_kib: int
    hwm_before_kib: int
    hwm_after_kib: int
    errors: list[str]

    @property
    def growth_mib(self) -> float:
        return (self.hwm_after_kib - self.hwm_before_kib) / 1024


def big_message(bench: Bench, peer: Peer) -> BigMessage:
    """osfmilter's peak RSS growth for one 50 MB message (cf. bench/memory_bench.py)."""
    pid = peer.rss_pid()
    assert pid is not None
    warm = bench.send(peer, 1, 1_000, "warm", 0, sessions=1)
    idle, before = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
    sample = bench.send(peer, 1, BIG_MESSAGE, "50 MB", 0, sessions=1)
    return BigMessage(
        peer.key, BIG_MESSAGE, idle, before, status_kib(pid, "VmHWM"), warm.errors + sample.errors
    )


def check_sender_class(peer: Peer) -> str:
    """What class smtp-source's mail falls in: the rate slots and events say."""
    assert peer.engine is not None
    with peer.engine.connect() as connection:
        keys = [row[0] for row in connection.execute(text("SELECT DISTINCT key FROM rate_slots"))]
        rows = connection.execute(
            text(
                "SELECT reason, header_from_domain, spf_result, count(*) FROM events "
                "GROUP BY reason, header_from_domain, spf_result"
            )
        ).all()
    buckets = sorted({key.rpartition("|")[2] for key in keys})
    events = ", ".join(f"{r[0]} from={r[1] or '-'} spf={r[2] or '-'}: {r[3]}" for r in rows)
    return f"rate buckets used: {', '.join(buckets) or '-'}; events: {events}"


def signed_after_warmup(peer: Peer) -> str:
    """The milter's own count of signatures: the warm-up's mail was signed, or not."""
    with urllib.request.urlopen(peer.metrics_url, timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    signed = [line for line in body.splitlines() if line.startswith("osfmilter_dkim_signatures")]
    failed = [line for line in body.splitlines() if line.startswith("osfmilter_dkim_failures")]
    return f"signed: {'; '.join(signed) or 'none'}; failures: {'; '.join(failed) or 'none'}"


def profile_osfmilter(bench: Bench, peer: Peer, scratch: Path) -> list[str]:
    """py-spy (the thread holding the GIL) during one extra C batch: where Python's time goes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["py-spy not installed: `.venv/bin/pip install py-spy`"]
    pid = peer.rss_pid()
    assert pid is not None
    out = scratch / "pyspy.txt"
    messages = bench.settings.messages("10 KB", "C")
    seconds = 60
    spy_process = subprocess.Popen(
        [
            spy,
            "record",
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "-r",
            "250",
            "-d",
            str(seconds),
            "-p",
            str(pid),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    bench.send(peer, messages, PAYLOAD["10 KB"], "profile", 0)
    spy_process.send_signal(signal.SIGINT)
    try:
        spy_process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy_process.kill()
        spy_process.wait()
    if not out.exists():
        return ["py-spy wrote nothing"]
    return summarise_profile(bench, out.read_text())


PROFILE_GROUPS = (
    ("SQLAlchemy + DB driver", ("sqlalchemy/", "sqlite3/", "psycopg/")),
    ("logging (decision lines)", ("logging/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("SPF (pyspf, dnspython)", ("spf.py", "dns/")),
    ("pydantic", ("pydantic",)),
    ("email parsing", ("email/",)),
)


def summarise_profile(bench: Bench, collapsed: str) -> list[str]:
    total = 0
    groups: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        names = [re.sub(r" \((.*?):\d+\)$", r" (\1)", f) for f in frames]
        for name in set(names):
            if "/osfmilter/" in name or "site-packages" not in name:
                inclusive[name] += count
        leaves[names[-1]] += count
        for group, needles in PROFILE_GROUPS:
            if any(n in f for f in frames for n in needles):
                groups[group] += count
        callbacks = [
            m.group(1) for f in frames if (m := re.match(r"OsfMilter\.(\w+) \(.*adapter\.py", f))
        ]
        stages[callbacks[0] if callbacks else "(outside the callbacks)"] += count
    if not total:
        return ["py-spy recorded no samples"]
    lines = [
        f"py-spy --gil, {total} samples (250 Hz) of the thread holding the GIL, "
        f"{bench.settings.sessions} smtp-source session(s)",
        "",
        "| adapter callback (inclusive) | share |",
        "|---|--:|",
    ]
    lines += [f"| {stage} | {count / total:.0%} |" for stage, count in stages.most_common()]
    lines += ["", "| library (inclusive) | share |", "|---|--:|"]
    lines += [f"| {group} | {count / total:.0%} |" for group, count in groups.most_common()]
    lines += ["", "| osfmilter / stdlib function (inclusive) | share |", "|---|--:|"]
    lines += [f"| `{name}` | {count / total:.0%} |" for name, count in inclusive.most_common(25)]
    lines += ["", "| leaf function (self time) | share |", "|---|--:|"]
    lines += [f"| `{name}` | {count / total:.0%} |" for name, count in leaves.most_common(15)]
    return lines


# Report --------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def paired(samples: Sequence[Sample], top: str, bottom: str, size: str) -> list[float]:
    rates = {(s.key, s.round): s.rate for s in samples if s.size == size}
    rounds = sorted({s.round for s in samples if s.size == size})
    return [
        rates[(top, r)] / rates[(bottom, r)]
        for r in rounds
        if (top, r) in rates and (bottom, r) in rates and rates[(bottom, r)] > 0
    ]


def ratio_text(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def pooled(
    samples: Sequence[Sample], key: str, size: str, scans: bool = False
) -> dict[str, Histogram]:
    merged: dict[str, Histogram] = {}
    for sample in samples:
        if sample.key == key and sample.size == size:
            for name, histogram in (sample.scans if scans else sample.callbacks).items():
                merged[name] = merged.get(name, Histogram()).plus(histogram)
    return merged


@dataclass
class Verdict:
    what: str
    target: str
    value: str
    met: bool | None
    by: str = ""

    def row(self) -> str:
        status = "–" if self.met is None else ("met" if self.met else f"**missed** {self.by}")
        return f"| {self.what} | {self.target} | {self.value} | {status} |"


def ratio_verdict(what: str, values: Sequence[float], target: float) -> Verdict:
    if not values:
        return Verdict(what, f"≥ {target:.2f}", "not measured", None)
    value = median(values)
    short = (target - value) / target
    return Verdict(
        what,
        f"≥ {target:.2f}",
        ratio_text(values),
        value >= target,
        f"by {short:.0%} ({value:.2f} < {target:.2f})",
    )


def report(
    settings: Settings,
    every: list[Sample],
    rss: dict[tuple[str, str], int],
    big: BigMessage | None,
    facts: list[str],
    notes: list[str],
) -> tuple[str, bool]:
    # Figures come from clean measurements only; the others are counted and listed.
    samples = [s for s in every if not s.errors]
    out: list[str] = []
    out += [f"- {fact}" for fact in facts]
    out.append("")
    verdicts: list[Verdict] = []
    for size in settings.sizes:
        out += [
            f"#### {size} messages ({PAYLOAD[size]:,} bytes of payload), "
            f"{settings.sessions} sessions, {settings.rounds} round(s)",
            "",
            "| configuration | msgs | msg/s (median) | rounds | ÷ bare | "
            "peer CPU ms/msg (kernel) | peak RSS MiB | machine busy | rounds with errors |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for key in settings.configs:
            tried = [s for s in every if s.key == key and s.size == size]
            own = [s for s in tried if not s.errors]
            if not tried:
                continue
            failed = len(tried) - len(own)
            if not own:
                out.append(
                    f"| {key}. {CONFIGS[key]} | {tried[0].messages:,} | no clean round | "
                    f"| | | | | {failed} of {len(tried)} |"
                )
                continue
            rates = [s.rate for s in own]
            bare = ratio_text(paired(samples, key, "A", size)) if key != "A" else "1"
            extra = ""
            if key == "D":
                extra = f" (+ PostgreSQL ≥ {fmt(median([s.database_cpu_ms for s in own]), 2)})"
            if key == "E":
                extra = f" (+ scanners {fmt(median([s.scanner_cpu_ms for s in own]), 1)})"
            cpu = (
                "–"
                if key == "A"
                else (
                    f"{fmt(median([s.cpu_ms for s in own]), 2)} "
                    f"({fmt(median([s.system_cpu_ms for s in own]), 2)} sys){extra}"
                )
            )
            peak = rss.get((key, size), 0)
            peak_text = fmt(peak / 1024) if peak else "–"
            out.append(
                f"| {key}. {CONFIGS[key]} | {own[0].messages:,} | {fmt(median(rates))} | "
                f"{fmt(min(rates))}–{fmt(max(rates))} | {bare} | {cpu} | {peak_text} | "
                f"{median([s.busy for s in own]):.0%} | {failed} of {len(tried)} |"
            )
        out.append("")
        verdicts.append(ratio_verdict(f"C/B, {size}", paired(samples, "C", "B", size), 0.90))
        verdicts.append(ratio_verdict(f"C/F, {size}", paired(samples, "C", "F", size), 1.2))
        verdicts.append(ratio_verdict(f"D/C, {size}", paired(samples, "D", "C", size), 0.9))
    # osfmilter's own latency per stage.
    if any(s.callbacks for s in samples):
        out += [
            "#### osfmilter's latency per callback (its histograms, clean rounds pooled)",
            "",
            "| configuration | size | "
            + " | ".join(f"{s} mean / p50 / p99 ms" for s in STAGES)
            + " |",
            "|---|---|" + "--:|" * len(STAGES),
        ]
    for size in settings.sizes:
        for key in OSF:
            hist = pooled(samples, key, size)
            if not hist:
                continue
            cells = []
            for stage in STAGES:
                h = hist.get(stage)
                cells.append(
                    "–"
                    if h is None or not h.count
                    else f"{fmt(h.mean_ms(), 2)} / {fmt(h.quantile_ms(0.5), 2)} / "
                    f"{fmt(h.quantile_ms(0.99), 1)}"
                )
            out.append(f"| {key} | {size} | " + " | ".join(cells) + " |")
    if any(s.callbacks for s in samples):
        out += [
            "",
            "Percentiles are interpolated within the histogram's buckets "
            "(0.5, 1, 2.5, 5, 10, 25, 50, 100, 250 ms, ...); the means are exact.",
            "",
        ]
    # CPU target.
    c_cpu = [s.cpu_ms for s in samples if s.key == "C" and s.size == "10 KB"]
    if c_cpu:
        value = median(c_cpu)
        verdicts.append(
            Verdict(
                "osfmilter CPU per message, C 10 KB",
                "≤ 1.5 ms",
                f"{value:.2f} ms",
                value <= 1.5,
                f"by {value - 1.5:.2f} ms ({value / 1.5:.1f}×)",
            )
        )
    # Scanning: added latency vs the scanners' own.
    if any(s.key == "E" for s in samples):
        out += [
            "#### E: what scanning adds to a message, against the scanners' own latency",
            "",
            "| size | eom E mean / p50 ms | eom C mean / p50 ms | added mean / p50 ms | "
            "clamd mean / p50 / p99 ms | spamd mean / p50 / p99 ms | slower + 10 % (mean) |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for size in settings.sizes:
            eom_e = pooled(samples, "E", size).get("eom")
            eom_c = pooled(samples, "C", size).get("eom")
            scans = pooled(samples, "E", size, scans=True)
            if eom_e is None or eom_c is None or not scans:
                continue
            added = eom_e.mean_ms() - eom_c.mean_ms()
            added_p50 = eom_e.quantile_ms(0.5) - eom_c.quantile_ms(0.5)
            measured = {name: h for name, h in scans.items() if h.count}
            slower = max((h.mean_ms() for h in measured.values()), default=math.nan)
            cells = []
            for name in ("clamav", "spamassassin"):
                h = measured.get(name)
                cells.append(
                    "–"
                    if h is None
                    else f"{fmt(h.mean_ms())} / "
                    f"{fmt(h.quantile_ms(0.5))} / {fmt(h.quantile_ms(0.99))}"
                )
            out.append(
                f"| {size} | {fmt(eom_e.mean_ms())} / {fmt(eom_e.quantile_ms(0.5))} | "
                f"{fmt(eom_c.mean_ms())} / {fmt(eom_c.quantile_ms(0.5))} | "
                f"{fmt(added)} / {fmt(added_p50)} | {cells[0]} | {cells[1]} | "
                f"{fmt(slower * 1.1)} |"
            )
            verdicts.append(
                Verdict(
                    f"E {size}: added latency ≤ slower scanner + 10 %",
                    f"≤ {fmt(slower * 1.1)} ms",
                    f"{fmt(added)} ms (slower scanner {fmt(slower)} ms)",
                    added <= slower * 1.1,
                    f"by {fmt(added - slower * 1.1)} ms",
                )
            )
        out += [
            "",
            "Added = mean eom callback of E − mean eom callback of C at the same size; "
            "the scanners' latency is osfmilter_scan_duration_seconds.",
            "",
        ]
    if big is not None:
        out += [
            "#### One 50 MB message through osfmilter "
            f"({'with clamd' if big.config == 'E' else 'no clamd'})",
            "",
            "| message | idle RSS | peak before | peak after | growth | errors |",
            "|--:|--:|--:|--:|--:|--:|",
            f"| {big.size:,} B payload | {big.idle_rss_kib / 1024:.1f} MiB | "
            f"{big.hwm_before_kib / 1024:.1f} MiB | {big.hwm_after_kib / 1024:.1f} MiB | "
            f"**{big.growth_mib:.1f} MiB** | {len(big.errors)} |",
            "",
        ]
        verdicts.append(
            Verdict(
                "peak RSS growth, one 50 MB message",
                "≤ 32 MiB",
                f"{big.growth_mib:.1f} MiB",
                big.growth_mib <= 32,
                f"by {big.growth_mib - 32:.1f} MiB",
            )
        )
    out += [
        "#### Targets",
        "",
        "| what | target | measured (median, rounds' range) | |",
        "|---|---|---|---|",
    ]
    out += [v.row() for v in verdicts]
    out.append("")
    errors = [f"{s.key} {s.size} round {s.round + 1}: {e}" for s in every for e in s.errors]
    if big is not None:
        errors += [f"50 MB message: {e}" for e in big.errors]
    if errors:
        out += ["#### Errors", ""] + [f"- {e}" for e in errors[:30]] + [""]
    else:
        out += [
            "No errors: every message of every measurement reached the sink (smtp-sink's "
            "count and Postfix's `status=sent` lines), nothing was refused or deferred, "
            "and no milter logged a warning, an error or a traceback.",
            "",
        ]
    out += notes
    return "\n".join(out), bool(errors)


def write_results(block: str) -> None:
    text_now = RESULTS.read_text()
    body = f"{BEGIN}\n{block.rstrip()}\n{END}"
    if SECTION not in text_now:
        text_now = text_now.rstrip("\n") + f"\n\n{SECTION}\n\n{body}\n"
    elif BEGIN in text_now and END in text_now:
        start, end = text_now.index(BEGIN), text_now.index(END) + len(END)
        text_now = text_now[:start] + body + text_now[end:]
    else:
        text_now = text_now.rstrip("\n") + f"\n\n{body}\n"
    RESULTS.write_text(text_now)


def machine_facts(settings: Settings) -> list[str]:
    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]

    def version(command: list[str], pattern: str = r"[\d.]+") -> str:
        try:
            output = subprocess.run(
                command, capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        found = re.search(pattern, output.stdout + output.stderr)
        return found.group(0) if found else "?"

    import Milter

    after_version = r"(?<=version )[\d.]+"
    facts = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `{settings.command}`",
        f"nproc: {os.cpu_count()}, CPU: {models[0] if models else '?'}, "
        f"{platform.system()} {platform.release()}",
        f"Postfix {version(['postconf', '-d', '-h', 'mail_version'])}, "
        f"Python {platform.python_version()}, pymilter {Milter.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, "
        f"ClamAV {version(['clamd', '--version'])}, "
        f"SpamAssassin {version(['spamd', '--version'], after_version)}, "
        f"rspamd {version(['rspamd', '--version'], after_version)}",
    ]
    commit = version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], r"\w+")
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "osfmilter"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    facts.append(
        f"osfmilter at commit {commit}"
        + (" with uncommitted changes in osfmilter/" if dirty else ", clean tree")
    )
    if "D" in settings.configs:
        engine = create_engine(settings.pg_admin_url)
        try:
            with engine.connect() as connection:
                server = connection.execute(text("SHOW server_version")).scalar()
            facts[2] += f", PostgreSQL {server}"
        except Exception as exc:  # noqa: BLE001 - a fact, not a failure
            facts[2] += f", PostgreSQL ? ({exc})"
        finally:
            engine.dispose()
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    # A milter that crashes leaves every thread's Python stack in its log.
    os.environ["PYTHONFAULTHANDLER"] = "1"
    facts = machine_facts(settings)
    load_before = os.getloadavg()
    started = time.monotonic()
    samples: list[Sample] = []
    rss: dict[tuple[str, str], int] = {}
    notes: list[str] = []
    big: BigMessage | None = None
    scratch = Path(tempfile.mkdtemp(prefix="osftp-", dir="/tmp"))
    scratch.chmod(0o755)
    try:
        with ExitStack() as stack:
            sink = SmtpSink(scratch)
            sink.start()
            stack.callback(sink.stop)
            dns = DnsServer(ZONE)
            dns.start()
            stack.callback(dns.stop)
            peers = start_peers(settings, stack, scratch, sink, dns)
            bench = Bench(settings, sink)
            log(f"all started after {time.monotonic() - started:.0f} s")
            if settings.big_message and ("E" in peers or "C" in peers):
                peer = peers.get("E") or peers["C"]
                log(f"one {BIG_MESSAGE:,} byte message through {peer.title}")
                big = big_message(bench, peer)
                log(f"  peak RSS growth {big.growth_mib:.1f} MiB {big.errors or ''}")
            for key, peer in list(peers.items()):
                warm = bench.send(
                    peer, WARMUP // 4 if key == "E" else WARMUP, PAYLOAD["10 KB"], "warm-up", 0
                )
                log(f"warm-up {peer.title}: {warm.rate:.0f} msg/s {warm.errors or ''}")
                if warm.errors:
                    notes.append(f"- {peer.title} left out: its warm-up failed: {warm.errors}")
                    del peers[key]
            for key in OSF:
                if key in peers:
                    notes.append(
                        f"- {peers[key].title}, smtp-source's mail after the warm-up: "
                        f"{check_sender_class(peers[key])}"
                    )
                if key in DKIM_ALGORITHMS and key in peers:
                    notes.append(f"- {peers[key].title}: {signed_after_warmup(peers[key])}")
            keys = list(peers)
            for size in settings.sizes:
                for round_number in range(settings.rounds):
                    shift = round_number % len(keys)
                    for key in keys[shift:] + keys[:shift]:
                        peer = peers[key]
                        messages = settings.messages(size, key)
                        sample = bench.send(peer, messages, PAYLOAD[size], size, round_number)
                        samples.append(sample)
                        log(
                            f"{size} round {round_number + 1}/{settings.rounds} {peer.title}: "
                            f"{messages} in {sample.seconds:.1f} s = {sample.rate:.1f} msg/s, "
                            f"peer CPU {sample.cpu_ms:.2f} ms/msg "
                            f"({sample.system_cpu_ms:.2f} system), busy {sample.busy:.0%}"
                            + (f"  ERRORS {sample.errors}" if sample.errors else "")
                        )
                for key, peer in peers.items():
                    pid = peer.rss_pid()
                    if pid is not None:
                        rss[(key, size)] = status_kib(pid, "VmHWM")
            if settings.profile and "C" in peers:
                log("py-spy on C, one extra 10 KB batch")
                profile = profile_osfmilter(bench, peers["C"], scratch)
                notes += ["", "#### Where osfmilter's CPU goes (C, 10 KB, py-spy)", "", *profile]
    finally:
        if settings.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if any(key in settings.configs for key in ("C", "E")):
        facts.append(
            "osfmilter on SQLite (C, E): "
            + (
                "started with its SQLite connections kept open (`--sqlite-pool-open`: "
                "a pool of 64, no overflow), around the crash on closing one"
                if settings.sqlite_pool_open
                else "as shipped (a pool of 64 connections that are never closed, group commit)"
            )
        )
    load_after = os.getloadavg()
    facts.append(
        "load average (1/5/15 min) before: "
        + " / ".join(f"{x:.2f}" for x in load_before)
        + ", after: "
        + " / ".join(f"{x:.2f}" for x in load_after)
        + f"; whole run {time.monotonic() - started:.0f} s"
    )
    block, failed = report(settings, samples, rss, big, facts, notes)
    print(block)
    if settings.results:
        write_results(block)
        log(f"written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

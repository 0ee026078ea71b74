"""Faults under a running relay: the milter killed, frozen, stopped or absent, clamd
talking nonsense or refusing the size, the database slow or locked.

Everything is real: a private Postfix in front (``milter_default_action =
tempfail``), the ``osfmilter run`` process, clamd, PostgreSQL (and SQLite for
its own lock). clamd is a fake (tests/harness/fakeclamd.py) only where a real
one cannot do what a test needs: answer nonsense, or hold a scan so that the
test knows the milter is inside its end of message. The rule under test is
the relay's promise to its customers: a fault delays mail (4xx, the
customer's queue retries), it never loses it, never lets it through
unscanned, and a retried message is delivered and counted once.

One relay serves the whole module. Each test states the milter configuration
it needs (:meth:`FaultRelay.use`), which restarts the milter only when it
changes, and sends as a sending server of its own, so counts never mix.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from osfmilter.config import Config
from osfmilter.storage import admin
from osfmilter.storage.db import make_engine
from osfmilter.storage.domains import add_domain
from osfmilter.storage.schema import Event, MonthlyVolume, RateSlot
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION
from tests.harness.clamd import ClamdProcess
from tests.harness.contrib import contrib_main_cf
from tests.harness.database import reset_database
from tests.harness.fakeclamd import ENDLESS, FakeClamd
from tests.harness.milter import MilterProcess
from tests.harness.ports import free_port
from tests.harness.postfix import PostfixInstance
from tests.harness.sink import Sink
from tests.harness.smtpclient import Client, Reply, Result, make_message, send
from tests.integration.conftest import message_id

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

#: [database] timeout of the milter: statement timeout (PostgreSQL), lock wait (SQLite).
DB_TIMEOUT = 3.0
#: [clamav] timeout of the milter.
SCAN_TIMEOUT = 10.0
#: milter_content_timeout of the relay's second listener (the first has contrib's 300 s).
SHORT_CONTENT_TIMEOUT = 5
RCPT = "bob@example.org"

#: What Postfix answers on the milter's behalf with milter_default_action = tempfail.
MILTER_UNAVAILABLE = (451, "4.7.1 Service unavailable - try again later")
SCANNER_DOWN = (451, "4.7.1 message could not be scanned (clamav unavailable); please retry later")
DATABASE_DOWN = (451, "4.3.0 temporary database error, please retry later")


class TwoListenerPostfix(PostfixInstance):
    """The harness Postfix plus a listener whose milter_content_timeout is short."""

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.short_timeout_port = free_port()

    def master_cf(self) -> str:
        short = (
            f"127.0.0.1:{self.short_timeout_port} inet n - n - - smtpd"
            f" -o milter_content_timeout={SHORT_CONTENT_TIMEOUT}s\n"
        )
        return short + super().master_cf()


@dataclass(frozen=True)
class MilterSetup:
    """What a test needs the milter to talk to."""

    database: Literal["postgresql", "sqlite"]
    clamav: Literal["clamd", "small-clamd", "fake"]  # small-clamd: StreamMaxLength 1M


REAL = MilterSetup("postgresql", "clamd")
SQLITE = MilterSetup("sqlite", "clamd")
SMALL_CLAMD = MilterSetup("postgresql", "small-clamd")
FAKE_CLAMD = MilterSetup("postgresql", "fake")


@dataclass
class FaultRelay:
    workdir: Path
    postfix: TwoListenerPostfix
    sink: Sink
    pg: SqlStore
    pg_url: str
    sqlite: SqlStore
    sqlite_url: str
    clamd: ClamdProcess
    small_clamd: ClamdProcess
    fake_clamd: FakeClamd
    milter_port: int
    metrics_port: int
    milter: MilterProcess | None = None
    setup: MilterSetup | None = None
    _registered: set[tuple[str, str]] = field(default_factory=set)

    # The milter ---------------------------------------------------------------------------

    def use(self, setup: MilterSetup) -> MilterProcess:
        """A running milter talking to what ``setup`` names (restarted only if need be)."""
        if self.milter is not None and self.setup == setup and self.milter_running():
            return self.milter
        if self.milter is not None:
            self.milter.stop()
        clamav = {
            "clamd": self.clamd.socket_path,
            "small-clamd": self.small_clamd.socket_path,
            "fake": self.fake_clamd.socket_path,
        }[setup.clamav]
        database_url = self.pg_url if setup.database == "postgresql" else self.sqlite_url
        milter = MilterProcess(self.workdir / "milter", database_url, port=self.milter_port)
        milter.config_path.write_text(
            f'state_dir = "{milter.workdir}"\nnode_name = "test-node"\n'
            f'[milter]\nsocket = "{milter.socket_spec}"\n'
            + (f"content_timeout = {SHORT_CONTENT_TIMEOUT}\n" if setup.clamav == "fake" else "")
            + f'[database]\nurl = "{database_url}"\ntimeout = {DB_TIMEOUT}\n'
            f'[clamav]\naddress = "{clamav}"\ntimeout = {SCAN_TIMEOUT}\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
        )
        self.milter, self.setup = milter, setup
        milter.start()
        return milter

    @property
    def milter_pid(self) -> int:
        assert self.milter is not None and self.milter.process is not None
        return self.milter.process.pid

    def milter_running(self) -> bool:
        return (
            self.milter is not None
            and self.milter.process is not None
            and self.milter.process.poll() is None
        )

    def restart_milter(self) -> None:
        """Start the milter again after a test killed or stopped it (same configuration)."""
        assert self.milter is not None
        self.milter.stop()  # reaps a process that is already gone
        self.milter.start()

    def milter_log_since(self, offset: int) -> str:
        assert self.milter is not None
        return self.milter.log()[offset:]

    def milter_log_size(self) -> int:
        assert self.milter is not None
        return len(self.milter.log())

    # The database -------------------------------------------------------------------------

    @property
    def store(self) -> SqlStore:
        assert self.setup is not None
        return self.pg if self.setup.database == "postgresql" else self.sqlite

    def register(self, customer: str, domain: str, server: str) -> str:
        """A customer with one scanned domain and one sending server; returns its identity."""
        key = (str(self.store.engine.url), customer)
        if key not in self._registered:
            now = datetime.now(UTC)
            with self.store.session() as session:
                admin.add_customer(session, customer, "free", now)
                add_domain(session, domain, customer, now)
                admin.add_server(session, server, customer, TEST_REGISTRATION, now)
            self._registered.add(key)
        return f"server:{server}/32"

    def events(self, identity: str) -> list[Event]:
        with self.store.session() as session:
            return list(
                session.scalars(select(Event).where(Event.identity == identity).order_by(Event.id))
            )

    def slots(self, identity: str, *, pending: bool) -> int:
        """Rate slots of the identity: counting ones (pending=False) or reservations."""
        with self.store.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(RateSlot)
                    .where(RateSlot.key.like(f"{identity}|%"), RateSlot.pending.is_(pending))
                )
                or 0
            )

    def volume(self, domain: str) -> tuple[int, int]:
        """(messages, bytes) charged to the domain's outbound volume, all months."""
        with self.store.session() as session:
            row = session.execute(
                select(
                    func.coalesce(func.sum(MonthlyVolume.messages), 0),
                    func.coalesce(func.sum(MonthlyVolume.bytes), 0),
                ).where(MonthlyVolume.domain == domain, MonthlyVolume.direction == "outbound")
            ).one()
        return int(row[0]), int(row[1])

    # Mail ---------------------------------------------------------------------------------

    def send(
        self, data: bytes, server: str, rcpts: tuple[str, ...] = (RCPT,), *, port: int | None = None
    ) -> Result:
        sender = f"news@{sender_domain(data)}"
        return send(port or self.postfix.smtpd_port, sender, rcpts, data, client_addr=server)

    def open_transaction(self, data: bytes, server: str) -> Client:
        """A session that has had MAIL and RCPT accepted and is about to send DATA."""
        client = Client(timeout=120)
        assert client.connect(self.postfix.smtpd_port).code == 220
        assert client.xclient(addr=server).code == 220
        mail = client.mail(f"news@{sender_domain(data)}")
        rcpt = client.rcpt(RCPT)
        assert mail.ok and rcpt.ok, (mail, rcpt)
        return client

    def delivered_once(self, data: bytes, timeout: float = 60.0) -> None:
        """The sink holds exactly one copy of the message, and Postfix holds none."""
        mid = message_id(data)
        self.sink.wait_for_message_id(mid, timeout=timeout)
        self.postfix.wait_queue_empty(timeout=timeout)
        assert self.sink.count_message_id(mid) == 1, f"{mid} delivered more than once"

    def not_delivered(self, data: bytes) -> None:
        self.postfix.wait_queue_empty()
        assert self.sink.count_message_id(message_id(data)) == 0

    def backend_up(self, backend: str) -> float:
        """osfmilter_backend_up{backend} as the milter's metrics endpoint reports it."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            exposition = response.read().decode()
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == "osfmilter_backend_up" and sample.labels == {"backend": backend}:
                    return float(sample.value)
        raise AssertionError(f"no osfmilter_backend_up sample for {backend}:\n{exposition}")


def sender_domain(data: bytes) -> str:
    """The From: domain make_message wrote (the tests send as that domain)."""
    for line in data.split(b"\r\n"):
        if line.startswith(b"From: "):
            return line.decode().rpartition("@")[2].strip("> ")
    raise AssertionError("message without From:")


def reply_of(reply: Reply | None) -> tuple[int, str]:
    assert reply is not None
    return reply.code, reply.text


def rchar(pid: int) -> int:
    """Bytes the process has read so far (sockets and files): /proc/PID/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def faults(pg_server_url: str) -> Iterator[FaultRelay]:
    workdir = Path(tempfile.mkdtemp(prefix="osffault-", dir="/tmp"))
    workdir.chmod(0o755)  # Postfix's unprivileged daemons must reach their queue
    (workdir / "postfix").mkdir()
    pg_engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(pg_engine)
    sqlite_url = f"sqlite:///{workdir}/faults.sqlite3"
    sqlite_engine = make_engine(sqlite_url, Config().database.timeout)
    reset_database(sqlite_engine)
    fault_relay: FaultRelay | None = None
    try:
        with (
            Sink() as sink,
            ClamdProcess(workdir / "clamd") as clamd,
            ClamdProcess(workdir / "small-clamd", stream_max_length="1M") as small_clamd,
            FakeClamd(workdir / "fake-clamd" / "clamd.sock") as fake_clamd,
        ):
            milter_port = free_port()
            fault_relay = FaultRelay(
                workdir=workdir,
                postfix=TwoListenerPostfix(
                    workdir / "postfix",
                    relay_port=sink.port,
                    milter=f"inet:{milter_port}@127.0.0.1",
                    extra_main_cf=contrib_main_cf(),
                    name="osf-faults",
                ),
                sink=sink,
                pg=SqlStore(pg_engine),
                pg_url=pg_server_url,
                sqlite=SqlStore(sqlite_engine),
                sqlite_url=sqlite_url,
                clamd=clamd,
                small_clamd=small_clamd,
                fake_clamd=fake_clamd,
                milter_port=milter_port,
                metrics_port=free_port(),
            )
            fault_relay.use(REAL)
            with fault_relay.postfix:
                yield fault_relay
    finally:
        if fault_relay is not None and fault_relay.milter is not None:
            if fault_relay.milter_running():
                os.kill(fault_relay.milter_pid, signal.SIGCONT)  # in case a test froze it
            fault_relay.milter.stop()
        pg_engine.dispose()
        sqlite_engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


# 3. The milter is not running when the client connects ------------------------------------


def test_milter_down_at_connect_tempfails_the_session_and_the_next_one_is_delivered(
    faults: FaultRelay,
) -> None:
    faults.use(REAL)
    server = "192.0.2.103"
    identity = faults.register("absent", "absent.example", server)
    data = make_message("news@absent.example", [RCPT], "milter away", "Hello.\r\n")
    assert faults.milter is not None
    faults.milter.stop()
    try:
        # Postfix cannot reach the milter at connect; milter_default_action = tempfail
        # makes it answer the session's MAIL with its own 4xx.
        refused = faults.send(data, server)
        assert refused.banner.code == 220
        assert reply_of(refused.mail) == MILTER_UNAVAILABLE
        assert not refused.accepted

        # A session opened while the milter was away stays tempfailed, even once it is back.
        with Client() as stale:
            assert stale.connect(faults.postfix.smtpd_port).code == 220
            assert stale.xclient(addr=server).code == 220
            faults.milter.start()
            assert reply_of(stale.mail("news@absent.example")) == MILTER_UNAVAILABLE
            stale.rset()
            assert reply_of(stale.mail("news@absent.example")) == MILTER_UNAVAILABLE
    finally:
        if not faults.milter_running():
            faults.milter.start()

    # The customer's queue retries on a new connection: delivered, once.
    retry = faults.send(data, server)
    assert retry.accepted, retry
    faults.delivered_once(data)
    assert [(e.action, e.reason) for e in faults.events(identity)] == [("accept", "accepted")]


# 1. kill -9 while Postfix streams the body to the milter ----------------------------------


def test_milter_killed_between_body_chunks_tempfails_and_the_retry_is_delivered_once(
    faults: FaultRelay,
) -> None:
    faults.use(REAL)
    server = "192.0.2.101"
    identity = faults.register("killed", "killed.example", server)
    size = 30_000_000
    data = make_message("news@killed.example", [RCPT], "a big one", "Big.\r\n", size=size)
    pid = faults.milter_pid
    before = rchar(pid)
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(faults.send, data, server)
        # Postfix hands the body over in chunks of at most 64 KiB; once the milter has read
        # a megabyte of it, freeze it, make sure it is still inside the body, and kill it.
        wait_until(
            lambda: rchar(pid) - before > 1_000_000 or sending.done(),
            120,
            "the milter reading the body",
        )
        os.kill(pid, signal.SIGSTOP)
        read = rchar(pid) - before
        os.kill(pid, signal.SIGKILL)
        result = sending.result(timeout=120)
    assert 1_000_000 < read < size, f"the milter had read {read} of {size} bytes when killed"
    assert result.mail.ok and all(r.ok for r in result.rcpt)
    assert reply_of(result.data) == MILTER_UNAVAILABLE
    faults.not_delivered(data)
    # Nothing of the killed attempt was recorded or counted.
    assert faults.events(identity) == []
    assert faults.slots(identity, pending=False) == 0

    faults.restart_milter()
    retry = faults.send(data, server)
    assert retry.accepted, retry
    faults.delivered_once(data)
    [accepted] = faults.events(identity)
    assert (accepted.action, accepted.reason, accepted.rcpt_count) == ("accept", "accepted", 1)
    assert accepted.size >= size
    assert faults.slots(identity, pending=False) == 1


# 5. The database is slow or locked -----------------------------------------------------------


def test_postgresql_slower_than_the_statement_timeout_is_451_and_recovers_by_itself(
    faults: FaultRelay,
) -> None:
    faults.use(REAL)
    with faults.pg.engine.connect() as blocker:

        @contextmanager
        def locked() -> Iterator[None]:
            blocker.execute(text("LOCK TABLE smtp_servers IN ACCESS EXCLUSIVE MODE"))
            yield
            blocker.rollback()

        answers_451_while_locked_then_recovers(faults, "192.0.2.105", "slowdb", locked())


def answers_451_while_locked_then_recovers(
    faults: FaultRelay,
    server: str,
    name: str,
    locked: AbstractContextManager[None],
) -> None:
    """A message sent while ``locked`` holds the database is tempfailed within the
    database timeout; the same message is accepted once it is free, by the same milter."""
    identity = faults.register(name, f"{name}.example", server)
    data = make_message(f"news@{name}.example", [RCPT], "locked database", "Hello.\r\n")
    pid = faults.milter_pid
    with locked:
        started = time.monotonic()
        refused = faults.send(data, server)
        elapsed = time.monotonic() - started
    assert reply_of(refused.mail) == DATABASE_DOWN
    # Bounded by the timeout, not by the lock: the lookup waits one timeout, and
    # recording the refusal (it touches the locked database too) another.
    assert DB_TIMEOUT <= elapsed < 2 * DB_TIMEOUT + 3, elapsed
    faults.not_delivered(data)

    again = faults.send(data, server)
    assert again.accepted, again
    faults.delivered_once(data)
    assert faults.milter_pid == pid  # recovered without a restart
    # The refusal itself could not be stored (same lock); the milter logged it.
    assert [(e.action, e.reason) for e in faults.events(identity)] == [("accept", "accepted")]
    assert faults.slots(identity, pending=False) == 1


# 6. A message tempfailed five times, then accepted, counts once ---------------------------


def test_a_message_tempfailed_five_times_then_accepted_counts_once(faults: FaultRelay) -> None:
    faults.use(REAL)
    server = "192.0.2.106"
    identity = faults.register("retrying", "retrying.example", server)
    rcpts = (RCPT, "carol@example.org")
    data = make_message("news@retrying.example", list(rcpts), "retried", "Hello.\r\n" * 100)

    # Four times clamd is down: the reservation made at MAIL is given back each time.
    faults.clamd.stop()
    try:
        for attempt in range(4):
            result = faults.send(data, server, rcpts)
            assert reply_of(result.data) == SCANNER_DOWN, (attempt, result)
    finally:
        faults.clamd.start()

    # Once the database stalls while the accept is being recorded: the volume charge
    # made in that transaction must go with it.
    with faults.pg.engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        result = faults.send(data, server, rcpts)
        blocker.rollback()
    assert reply_of(result.data) == DATABASE_DOWN, result
    faults.not_delivered(data)
    assert faults.slots(identity, pending=False) == 0
    assert faults.volume("retrying.example") == (0, 0)

    accepted = faults.send(data, server, rcpts)
    assert accepted.accepted, accepted
    faults.delivered_once(data)

    events = faults.events(identity)
    # The database_error refusal could not be stored (the table was locked); it is logged.
    assert [(e.action, e.reason) for e in events] == (
        [("tempfail", "scanner_error")] * 4 + [("accept", "accepted")]
    )
    size = events[-1].size
    assert size >= len(data)
    assert faults.slots(identity, pending=False) == 1
    assert faults.slots(identity, pending=True) == 0
    assert faults.volume("retrying.example") == (1, size * len(rcpts))


# 5. (continued) SQLite, the embedded database, locked by another writer ------------------


def test_sqlite_locked_by_another_writer_is_451_and_recovers_by_itself(
    faults: FaultRelay,
) -> None:
    faults.use(SQLITE)
    blocker = sqlite3.connect(faults.workdir / "faults.sqlite3", isolation_level=None)
    try:

        @contextmanager
        def locked() -> Iterator[None]:
            blocker.execute("BEGIN EXCLUSIVE")
            yield
            blocker.execute("ROLLBACK")

        answers_451_while_locked_then_recovers(faults, "192.0.2.115", "lockedlite", locked())
    finally:
        blocker.close()


# 4. clamd refuses a stream above its StreamMaxLength -------------------------------------


def test_clamd_refusing_the_stream_size_is_451_never_unscanned_and_shows_in_the_metrics(
    faults: FaultRelay,
) -> None:
    faults.use(SMALL_CLAMD)
    server = "192.0.2.114"
    identity = faults.register("toobig", "toobig.example", server)
    data = make_message("news@toobig.example", [RCPT], "two megabytes", "Big.\r\n", size=2_000_000)
    started = time.monotonic()
    result = faults.send(data, server, port=faults.postfix.short_timeout_port)
    elapsed = time.monotonic() - started
    assert reply_of(result.data) == SCANNER_DOWN
    assert elapsed < SHORT_CONTENT_TIMEOUT, elapsed  # the milter answered, not Postfix
    assert "Size limit reached" in faults.small_clamd.log()
    faults.not_delivered(data)
    assert [(e.action, e.reason) for e in faults.events(identity)] == [
        ("tempfail", "scanner_error")
    ]
    assert faults.backend_up("clamav") == 0

    # A message within clamd's limit is scanned and passes; the health is back.
    small = make_message("news@toobig.example", [RCPT], "small", "Hello.\r\n")
    assert faults.send(small, server).accepted
    faults.delivered_once(small)
    assert faults.backend_up("clamav") == 1


# 4. clamd answering garbage ---------------------------------------------------------------

GARBAGE = {
    "nonsense": b"Lorem ipsum dolor sit amet\0",
    "binary": b"\x00\x01\x02\xfe\xff\0",
    "malformed-verdict": b"stream: OK, probably\0",
    "endless": ENDLESS,
    "silence": None,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_clamd_answering_garbage_is_451_never_unscanned_and_shows_in_the_metrics(
    faults: FaultRelay, garbage: bytes | None
) -> None:
    faults.use(FAKE_CLAMD)
    server = "192.0.2.104"
    identity = faults.register("garbled", "garbled.example", server)
    data = make_message("news@garbled.example", [RCPT], "garbage", "Hello.\r\n")
    faults.fake_clamd.answer = garbage
    try:
        streams = faults.fake_clamd.streams
        started = time.monotonic()
        result = faults.send(data, server, port=faults.postfix.short_timeout_port)
        elapsed = time.monotonic() - started
        assert faults.fake_clamd.streams == streams + 1  # the message did reach "clamd"
    finally:
        faults.fake_clamd.answer = b"stream: OK\0"
    assert reply_of(result.data) == SCANNER_DOWN
    assert elapsed < SHORT_CONTENT_TIMEOUT, elapsed
    faults.not_delivered(data)
    events = faults.events(identity)
    assert (events[-1].action, events[-1].reason) == ("tempfail", "scanner_error")
    assert all(e.action != "accept" for e in events)
    assert faults.backend_up("clamav") == 0


# 2. The milter hangs at the end of the message ------------------------------------------


def test_milter_frozen_at_end_of_message_is_451_after_postfix_timeout_and_the_retry_counts_once(
    faults: FaultRelay,
) -> None:
    milter = faults.use(FAKE_CLAMD)
    server = "192.0.2.102"
    identity = faults.register("frozen", "frozen.example", server)
    data = make_message("news@frozen.example", [RCPT], "frozen", "Hello.\r\n")
    fake = faults.fake_clamd
    pid = faults.milter_pid
    log_offset = faults.milter_log_size()
    streams = fake.streams
    fake.hold()
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            sending = pool.submit(faults.send, data, server, port=faults.postfix.short_timeout_port)
            # The stream reached clamd: the milter is inside its end-of-message callback.
            fake.wait_streams(streams + 1)
            os.kill(pid, signal.SIGSTOP)
            fake.release()  # the answer waits in the frozen milter's socket
            result = sending.result(timeout=60)
            elapsed = time.monotonic() - started
    finally:
        fake.release()
        os.kill(pid, signal.SIGCONT)
    assert reply_of(result.data) == MILTER_UNAVAILABLE
    assert SHORT_CONTENT_TIMEOUT <= elapsed < SHORT_CONTENT_TIMEOUT + 5, elapsed
    faults.not_delivered(data)
    # Thawed, the milter finishes the callback Postfix has given up on.
    wait_until(
        lambda: "osfmilter.decision" in faults.milter_log_since(log_offset),
        30,
        "the milter deciding the message it was frozen in",
    )

    retry = faults.send(data, server)
    assert retry.accepted, retry
    faults.delivered_once(data)
    assert milter.process is not None and milter.process.pid == pid

    # The frozen attempt was tempfailed by Postfix: it must not count as accepted.
    assert retry.data is not None
    queued_as = retry.data.text.rpartition(" ")[2]
    accepted = [e for e in faults.events(identity) if e.action == "accept"]
    assert [e.queue_id for e in accepted] == [queued_as], (
        "accepts recorded: "
        + ", ".join(e.queue_id for e in accepted)
        + "\nmilter log:\n"
        + faults.milter_log_since(log_offset)
    )
    assert faults.slots(identity, pending=False) == 1
    assert faults.volume("frozen.example")[0] == 1


# 7. SIGTERM while transactions are in flight ----------------------------------------------


def test_sigterm_with_transactions_in_flight_loses_no_mail_and_delivers_each_once(
    faults: FaultRelay,
) -> None:
    milter = faults.use(FAKE_CLAMD)
    server = "192.0.2.107"
    identity = faults.register("stopping", "stopping.example", server)
    messages = [
        make_message("news@stopping.example", [RCPT], f"in flight {i}", "Hello.\r\n")
        for i in range(6)
    ]
    clients = [faults.open_transaction(data, server) for data in messages]
    fake = faults.fake_clamd
    assert milter.process is not None
    process = milter.process
    results: dict[int, Future[Reply]] = {}
    streams = fake.streams
    fake.hold()
    try:
        with ThreadPoolExecutor(len(messages)) as pool:
            # Three are inside end of message (held by clamd), three between RCPT and DATA.
            # One after the other: the worker pool of Debian's libmilter (_FFR_WORKERS_POOL)
            # can leave a session that becomes ready together with another one unserved
            # until a worker is free or 10 s have passed.
            for i in range(3):
                results[i] = pool.submit(clients[i].data, messages[i])
                fake.wait_streams(streams + i + 1)
            process.send_signal(signal.SIGTERM)
            fake.release()
            for i in range(3, 6):
                results[i] = pool.submit(clients[i].data, messages[i])
            process.wait(timeout=30)
            replies = {i: results[i].result(timeout=60) for i in sorted(results)}
    finally:
        fake.release()
        for client in clients:
            client.quit()
    stopped = process.returncode
    log = milter.log()

    # Each in-flight transaction either finished or was told to come back later.
    outcomes = {i: (reply.code, reply.text) for i, reply in replies.items()}
    for i, (code, reply_text) in outcomes.items():
        finished = code == 250 and reply_text.startswith("2.0.0 Ok: queued as ")
        assert finished or (code, reply_text) == MILTER_UNAVAILABLE, (i, code, reply_text)

    faults.restart_milter()
    for i, outcome in outcomes.items():
        if outcome[0] != 250:
            retry = faults.send(messages[i], server)
            assert retry.accepted, (i, retry)
    for data in messages:
        faults.delivered_once(data)
    assert len([e for e in faults.events(identity) if e.action == "accept"]) == len(messages)
    assert faults.slots(identity, pending=False) == len(messages)

    # And the stop was the graceful one: libmilter's, not death by the signal.
    assert stopped == 0, f"milter ended by signal {-stopped}; replies {outcomes}\n{log[-2000:]}"
    assert "osfmilter stopped" in log

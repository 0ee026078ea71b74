"""Does one rate-limit check + count cost the same with 10^3 and 10^6 events stored?

The issue asks for the cost of one limit check + count on SQLite, PostgreSQL and
Redis with 10^3 and 10^6 events already stored: the ratio between the two must
be at most 1.2 (flat), with checks per second for 1 and 16 concurrent workers.

One check is what the milter does for an accepted message: ``reserve`` at MAIL
FROM and ``commit`` at the end of the message, in one ``all`` bucket of limit
100. The denied path (a sender at its limit: ``reserve`` alone, answered
``RateDenied``) is measured separately.

Every backend gets two stores side by side:

* small: 10^3 rows in ``events``, 10^3 slots of other identities in ``rate_slots``;
* large: 10^6 rows in ``events``, 10^5 slots of other identities in ``rate_slots``.

Redis holds no events; its stores hold the same slots of other identities as
sorted sets. The limiter never reads ``events``: they are there because the
milter's database holds them, so file size, cache and checkpoint effects show.

Rounds alternate the order of small and large (AB, BA, ...) and the report
gives medians over rounds, so drift of a shared machine does not pass for a
trend. The ratio is the median over rounds of large/small cost per check.

Before every measurement the limiter's clock jumps one window ahead: the
benchmark's own slots from earlier measurements have expired, each identity's
first check prunes them as a sliding window does in production, and the
benchmark's rows do not pile up in the small store. Within a measurement time
runs at wall-clock speed. Workers are threads sharing one limiter (and so one
engine and connection pool), as the milter's threads do.

Run from the repository root::

    .venv/bin/python bench/rate_bench.py            # full run, a few minutes
    .venv/bin/python bench/rate_bench.py --quick    # smoke test, under a minute

The exit status is 1 if any check failed or was answered unexpectedly, else 0;
timings never fail the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from sqlalchemy import Engine, create_engine, insert, text

from osfmilter.config import Config
from osfmilter.limits.rate import Bucket, RateDenied, RateLimiter, slot_key
from osfmilter.storage.db import make_engine, upgrade
from osfmilter.storage.direct import Cursor, Statement
from osfmilter.storage.rate import SqlRateLimiter
from osfmilter.storage.redis_rate import RedisRateLimiter
from osfmilter.storage.schema import RateSlot
from tests.harness.database import scratch_database

PG_ADMIN_URL = os.environ.get(
    "OSFMILTER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("OSFMILTER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
BACKENDS = ("sqlite", "postgresql", "redis")

WINDOW, RESERVATION_TTL = 300.0, 900.0
ADMIT = (Bucket("all", 100),)
FULL_IDENTITIES = 16  # the denied path: senders kept at their limit of 100
# Timed checks per measurement: a few seconds each, so a full run takes about 4 minutes.
CHECKS = {"sqlite": 700, "postgresql": 500, "redis": 2500}
SLOTS_PER_OTHER_IDENTITY = 20  # the background: other senders' windows
FLAT = 1.2
PREFILL_BATCH = 100_000


@dataclass(frozen=True)
class Size:
    name: str
    events: int
    slots: int


@dataclass(frozen=True)
class Settings:
    backends: tuple[str, ...]
    sizes: tuple[Size, Size]
    workers: tuple[int, ...]
    rounds: int
    checks: dict[str, int]  # per backend
    identities: int
    explain: bool
    pg_admin_url: str
    redis_url: str


class OffsetClock:
    """Wall-clock time plus an offset that jumps a window ahead between measurements."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic()

    def skip_window(self) -> None:
        """Let every slot taken so far leave the window (only between measurements)."""
        self.offset += WINDOW + 1.0


@dataclass
class Store:
    backend: str
    size: Size
    limiter: RateLimiter
    clock: OffsetClock
    url: str  # the database URL, or the Redis URL
    engine: Engine | None = None  # SQL only
    prefix: str = ""  # Redis only


@dataclass
class Sample:
    """One measurement: a number of checks by some workers."""

    seconds: float
    latencies: list[float]
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.latencies) if self.latencies else 0.0


# Identities -------------------------------------------------------------------------


def bench_identity(i: int) -> str:
    """The i-th sender whose mail the benchmark admits, named like a server identity."""
    return f"server:10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"


def full_identity(i: int) -> str:
    """The i-th sender kept at its limit, for the denied path."""
    return f"server:10.255.255.{i}/32"


def other_slot_key(j: int) -> str:
    """The ``all`` bucket of the j-th other sender, in the background of the store."""
    return f"server:172.16.{j // 256}.{j % 256}/32|all"


# Prefill: SQL -----------------------------------------------------------------------

# Numbers first..last as rows of one column x, generated inside the database.
SERIES = {
    "postgresql": "generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g(x)",
    "sqlite": "(WITH RECURSIVE s(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM s"
    " WHERE x < :last) SELECT x FROM s) AS g",
}
# One event a second, going back from now.
EVENT_AT = {
    "postgresql": "now() - x * interval '1 second'",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || x || ' seconds') || '.000000'",
}
EVENTS_INSERT = """
INSERT INTO events (at, node, queue_id, stage, client_ip, identity, envelope_sender,
    header_from_domain, rcpt_count, size, action, reason, smtp_code, enhanced_code,
    spam_score, spam_rules, virus_name, spf_result)
SELECT {at}, 'relay-1', 'Q' || x, 'eom', '192.0.2.' || (x % 250), 'server:192.0.2.' || (x % 250)
    || '/32', 'sender' || x || '@example.com', 'example.com', 1 + x % 5, 2000 + x % 50000,
    CASE WHEN x % 50 = 0 THEN 'reject' ELSE 'accept' END,
    CASE WHEN x % 50 = 0 THEN 'spam' ELSE 'clean' END,
    CASE WHEN x % 50 = 0 THEN 550 ELSE 250 END,
    CASE WHEN x % 50 = 0 THEN '5.7.1' ELSE '2.0.0' END,
    (x % 100) / 10.0, '', '', 'pass'
FROM {series}
"""
# Committed slots of other senders, 20 each, spread over the window before now.
SLOTS_INSERT = """
INSERT INTO rate_slots (key, reservation, pending, at)
SELECT 'server:172.16.' || (x / {per} / 256) || '.' || (x / {per} % 256) || '/32|all',
    'other' || x, FALSE, CAST(:now AS float) - x % 300
FROM {series}
"""


def insert_series(engine: Engine, template: str, rows: int, **params: object) -> None:
    """Run an INSERT ... SELECT over x = 0..rows-1, in batches of one transaction each."""
    dialect = engine.dialect.name
    statement = text(
        template.format(series=SERIES[dialect], at=EVENT_AT[dialect], per=SLOTS_PER_OTHER_IDENTITY)
    )
    for first in range(0, rows, PREFILL_BATCH):
        last = min(rows, first + PREFILL_BATCH) - 1
        with engine.begin() as connection:
            connection.execute(statement, {"first": first, "last": last, **params})


def prefill_sql(url: str, size: Size) -> None:
    """Fill a migrated database: events, and other senders' slots. No statement timeout."""
    engine = create_engine(url)
    try:
        insert_series(engine, EVENTS_INSERT, size.events)
        insert_series(engine, SLOTS_INSERT, size.slots, now=time.time())
        settle(engine)
    finally:
        engine.dispose()


def settle(engine: Engine) -> None:
    """Write the prefill out, so its checkpoint and writeback do not land in a measurement."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "postgresql":
            # Autovacuum would have analysed tables this size in production.
            connection.execute(text("VACUUM ANALYZE"))
            connection.execute(text("CHECKPOINT"))
        else:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    os.sync()


def open_sql(backend: str, url: str, size: Size) -> Store:
    setup = make_engine(url, Config().database.timeout)
    try:
        upgrade(setup)
    finally:
        setup.dispose()
    prefill_sql(url, size)
    engine = make_engine(url, Config().database.timeout)
    clock = OffsetClock()
    limiter = SqlRateLimiter(engine, clock, WINDOW, RESERVATION_TTL)
    return Store(backend, size, limiter, clock, url, engine)


@contextmanager
def sqlite_store(size: Size, directory: Path) -> Iterator[Store]:
    store = open_sql("sqlite", f"sqlite:///{directory / size.name}.sqlite3", size)
    try:
        yield store
    finally:
        assert store.engine is not None
        store.engine.dispose()


def postgres_database(admin_url: str) -> AbstractContextManager[str]:
    """A database of its own, dropped at the end however the benchmark ends."""
    return scratch_database(admin_url, "osf_bench")


@contextmanager
def postgres_store(size: Size, admin_url: str) -> Iterator[Store]:
    with postgres_database(admin_url) as url:
        store = open_sql("postgresql", url, size)
        try:
            yield store
        finally:
            assert store.engine is not None
            store.engine.dispose()


# Prefill: Redis ---------------------------------------------------------------------


def prefill_redis(client: redis.Redis, prefix: str, slots: int, now: float) -> None:
    """Other senders' counting slots, 20 to a sorted set, as the limiter keeps them."""
    pipe = client.pipeline(transaction=False)
    for j, first in enumerate(range(0, slots, SLOTS_PER_OTHER_IDENTITY)):
        members = range(first, min(slots, first + SLOTS_PER_OTHER_IDENTITY))
        key = f"{prefix}{other_slot_key(j)}:c"
        pipe.zadd(key, {f"other{x}": now - x % 300 for x in members})
        pipe.expire(key, 3600)  # gone by itself should the cleanup never run
        if j % 1000 == 999:
            pipe.execute()
    pipe.execute()


def delete_keys(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


@contextmanager
def redis_store(size: Size, url: str) -> Iterator[Store]:
    prefix = f"osfbench:{uuid.uuid4().hex[:8]}:{size.name}:"
    client = redis.Redis.from_url(url)
    limiter: RedisRateLimiter | None = None
    try:
        prefill_redis(client, prefix, size.slots, time.time())
        clock = OffsetClock()
        limiter = RedisRateLimiter(
            url, clock, WINDOW, RESERVATION_TTL, timeout=Config().database.timeout, prefix=prefix
        )
        yield Store("redis", size, limiter, clock, url, prefix=prefix)
    finally:
        if limiter is not None:
            limiter.client.close()
        delete_keys(client, prefix)
        client.close()


@contextmanager
def open_store(backend: str, size: Size, settings: Settings, directory: Path) -> Iterator[Store]:
    started = time.perf_counter()
    if backend == "sqlite":
        manager = sqlite_store(size, directory)
    elif backend == "postgresql":
        manager = postgres_store(size, settings.pg_admin_url)
    else:
        manager = redis_store(size, settings.redis_url)
    with manager as store:
        events = f"{size.events:,} events, " if backend != "redis" else ""
        log(
            f"  {backend} {size.name}: {events}{size.slots:,} other slots "
            f"stored in {time.perf_counter() - started:.1f} s"
        )
        yield store


# Checks and measurements ------------------------------------------------------------

Check = Callable[[int], bool]  # the i-th check; False if it was answered unexpectedly


def admitted_checks(store: Store, identities: int) -> Check:
    """Reserve at MAIL FROM, commit at end of message: the accepted message's cost."""
    limiter = store.limiter

    def check(i: int) -> bool:
        outcome = limiter.reserve(bench_identity(i % identities), ADMIT)
        if isinstance(outcome, RateDenied):
            return False
        limiter.commit(outcome)
        return True

    return check


def fill_full_identities(store: Store) -> None:
    """Put each full identity at its limit: 100 counting slots over the last minute.

    Written directly (one statement or pipeline), as the limiter would have
    written them, because 1,600 admissions per measurement would cost more
    than the measurement.
    """
    now = store.clock.now().timestamp()
    limit = ADMIT[0].limit
    slots = [
        (slot_key(full_identity(k), "all"), f"full{k}x{n}", now - 60.0 * n / limit)
        for k in range(FULL_IDENTITIES)
        for n in range(limit)
    ]
    if store.engine is not None:
        with store.engine.begin() as connection:
            connection.execute(
                insert(RateSlot),
                [
                    {"key": key, "reservation": rid, "pending": False, "at": at}
                    for key, rid, at in slots
                ],
            )
        return
    client = redis.Redis.from_url(store.url)
    try:
        pipe = client.pipeline(transaction=False)
        for key, rid, at in slots:
            pipe.zadd(f"{store.prefix}{key}:c", {rid: at})
            pipe.expire(f"{store.prefix}{key}:c", 3600)
        pipe.execute()
    finally:
        client.close()


def denied_checks(store: Store) -> Check:
    """Reserve for a sender at its limit: the refused message's cost."""
    limiter = store.limiter
    fill_full_identities(store)

    def check(i: int) -> bool:
        outcome = limiter.reserve(full_identity(i % FULL_IDENTITIES), ADMIT)
        return isinstance(outcome, RateDenied)

    return check


def measure(check: Check, workers: int, count: int) -> Sample:
    """Run checks 0..count-1 on this many threads; time each check and the whole."""
    barrier = threading.Barrier(workers + 1)
    latencies: list[list[float]] = [[] for _ in range(workers)]
    errors: list[str] = []

    def work(worker: int) -> None:
        own = latencies[worker]
        barrier.wait()
        for i in range(worker, count, workers):
            started = time.perf_counter()
            try:
                expected = check(i)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            own.append(time.perf_counter() - started)
            if not expected:
                errors.append("unexpected answer (admitted/denied)")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Sample(seconds, [x for own in latencies for x in own], errors)


def run_cell(store: Store, path: str, workers: int, settings: Settings) -> Sample:
    """One measurement on a fresh window: warm-up (discarded), then the timed checks."""
    store.clock.skip_window()
    check = (
        admitted_checks(store, settings.identities) if path == "admitted" else denied_checks(store)
    )
    checks = settings.checks[store.backend]
    # At least one check per full identity: the first prunes the last window's slots.
    warmup = measure(check, workers, max(2 * FULL_IDENTITIES, checks // 20))
    sample = measure(check, workers, checks)
    sample.errors[:0] = warmup.errors
    return sample


# Results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    backend: str
    path: str
    workers: int
    small: list[Sample]
    large: list[Sample]

    @property
    def ratios(self) -> list[float]:
        """Per round: (large cost per check) / (small cost per check)."""
        return [s.rate / b.rate for s, b in zip(self.small, self.large, strict=True) if b.rate]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def errors(self) -> list[str]:
        return [e for sample in self.small + self.large for e in sample.errors]


def median_of(samples: Sequence[Sample], value: Callable[[Sample], float]) -> float:
    return statistics.median(value(s) for s in samples)


def describe(samples: Sequence[Sample]) -> tuple[str, str]:
    """Checks per second, and mean / p50 / p99 latency in ms; medians over rounds."""
    rate = median_of(samples, lambda s: s.rate)
    mean = median_of(samples, lambda s: s.mean_ms)
    p50 = median_of(samples, lambda s: s.percentile_ms(0.50))
    p99 = median_of(samples, lambda s: s.percentile_ms(0.99))
    return f"{rate:,.0f}", f"{mean:.2f} / {p50:.2f} / {p99:.2f}"


def table(rows: Sequence[Row], sizes: tuple[Size, Size]) -> str:
    small, large = sizes
    lines = [
        f"| backend | path | workers | checks/s {small.name} | checks/s {large.name} "
        f"| ms mean / p50 / p99 {small.name} | ms mean / p50 / p99 {large.name} "
        f"| cost {large.name}/{small.name} | ≤ {FLAT} | rounds' range |",
        "|---|---|--:|--:|--:|--:|--:|--:|:-:|--:|",
    ]
    for row in rows:
        small_rate, small_ms = describe(row.small)
        large_rate, large_ms = describe(row.large)
        verdict = "yes" if row.ratio <= FLAT else "**no**"
        lines.append(
            f"| {row.backend} | {row.path} | {row.workers} | {small_rate} | {large_rate} "
            f"| {small_ms} | {large_ms} | {row.ratio:.2f} | {verdict} "
            f"| {min(row.ratios, default=0):.2f}–{max(row.ratios, default=0):.2f} |"
        )
    return "\n".join(lines)


# Statement plans and round trips ----------------------------------------------------


def capture_statements(action: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SQL statements (as sent to the driver, with parameters) that action executes.

    The limiter's statements go straight to the driver (osfmilter.storage.direct),
    so they are caught at its cursor wrapper, not through SQLAlchemy's events.
    """
    statements: list[tuple[str, Any]] = []
    execute, executemany = Cursor.execute, Cursor.executemany

    def recording_execute(self: Cursor, statement: Statement, params: Any = None) -> Cursor:
        statements.append((statement.text(self.dialect), params or {}))
        return execute(self, statement, params)

    def recording_executemany(self: Cursor, statement: Statement, rows: Any) -> None:
        statements.append((statement.text(self.dialect), rows[0] if rows else {}))
        executemany(self, statement, rows)

    Cursor.execute = recording_execute  # type: ignore[method-assign]
    Cursor.executemany = recording_executemany  # type: ignore[method-assign]
    try:
        action()
    finally:
        Cursor.execute = execute  # type: ignore[method-assign]
        Cursor.executemany = executemany  # type: ignore[method-assign]
    return statements


def pg_round_trips(url: str, clock: OffsetClock) -> list[str]:
    """What one check sends that waits for an answer (Query, or Sync), by libpq trace.

    A fresh engine as the milter makes it: a warm-up check opens its only
    connection, then the trace covers exactly the next check.
    """
    engine = make_engine(url, Config().database.timeout)
    limiter = SqlRateLimiter(engine, clock, WINDOW, RESERVATION_TTL)
    check = admitted_checks(Store("postgresql", Size("probe", 0, 0), limiter, clock, url), 1)
    try:
        check(0)  # opens the group commit's own connection, which the writes use
        with tempfile.TemporaryDirectory() as directory:
            trace = Path(directory) / "trace"
            with trace.open("w") as sink:
                pgconn = limiter.sql._writes._connection.driver_connection.pgconn
                pgconn.trace(sink.fileno())
                try:
                    check(0)
                finally:
                    pgconn.untrace()
            sent = waited_for(trace.read_text())
    finally:
        engine.dispose()
    return sent


def waited_for(trace: str) -> list[str]:
    """The client's Query and Sync messages in a libpq trace, Sync named by its Parse/Bind."""
    sent: list[str] = []
    last = ""
    for line in trace.splitlines():
        fields = line.split("\t")
        if fields and fields[0] not in ("F", "B"):
            fields = fields[1:]  # a timestamp
        if len(fields) < 3 or fields[0] != "F":
            continue
        kind, detail = fields[2], " ".join(fields[3:]).strip()
        if kind in ("Parse", "Bind") and not last:
            last = f"{kind} {detail}"
        elif kind == "Query":
            sent.append(f"Query {detail}")
        elif kind == "Sync":
            sent.append(f"{last} / Sync")
            last = ""
    return sent


def explain_sql(store: Store, out: list[str]) -> None:
    """Plans of the limiter's statements on the large store, and what one check sends."""
    assert store.engine is not None
    engine, limiter = store.engine, store.limiter
    identity = bench_identity(0)

    def one_check() -> None:
        outcome = limiter.reserve(identity, ADMIT)
        if not isinstance(outcome, RateDenied):
            limiter.commit(outcome)

    statements = capture_statements(one_check)
    dialect = engine.dialect.name
    out.append(f"\n### {store.backend}: one admitted check ({store.size.name} store)\n")
    out.append(f"Statements sent to the driver: {len(statements)}")
    for statement, _ in statements:
        out.append(f"    {' '.join(statement.split())[:160]}")
    if dialect == "postgresql":
        sent = pg_round_trips(store.url, store.clock)
        out.append(f"Round trips to the server (libpq trace): {len(sent)}")
        for message in sent:
            out.append(f"    {message[:160]}")
    for statement, parameters in statements:
        verb = statement.lstrip().split()[0].upper()
        if verb not in ("DELETE", "UPDATE") and "count(" not in statement:
            continue
        out.append(f"\n{' '.join(statement.split())}\n")
        out.extend(f"    {line}" for line in plan(engine, statement, parameters))


def plan(engine: Engine, statement: str, parameters: Any) -> list[str]:
    """EXPLAIN (PostgreSQL: ANALYZE, rolled back) or EXPLAIN QUERY PLAN (SQLite)."""
    if engine.dialect.name == "postgresql":
        prefix = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "
    else:
        prefix = "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            result = connection.exec_driver_sql(prefix + statement, parameters).all()
        finally:
            transaction.rollback()
    if engine.dialect.name == "postgresql":
        return [str(r[0]) for r in result]
    return [str(r[-1]) for r in result]


CLIENT_COMMANDS = {"evalsha", "eval", "script|load", "script"}


def explain_redis(store: Store, out: list[str]) -> None:
    """Commands one admitted check sends, counted by the server's INFO commandstats."""
    client = redis.Redis.from_url(store.url)
    try:
        check = admitted_checks(store, 1)
        check(0)  # the scripts are loaded now

        def calls() -> dict[str, int]:
            stats = client.info("commandstats")
            return {k: int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}

        before = calls()
        check(0)
        after = calls()
    finally:
        client.close()
    delta = {
        k[len("cmdstat_") :]: n - before.get(k, 0)
        for k, n in after.items()
        if n != before.get(k, 0)
    }
    out.append(f"\n### redis: one admitted check ({store.size.name} store)\n")
    sent = {k: n for k, n in delta.items() if k in CLIENT_COMMANDS}
    scripted = {k: n for k, n in delta.items() if k not in CLIENT_COMMANDS}
    out.append(f"Round trips (commands the client sent): {sum(sent.values())} {sent}")
    out.append(f"Commands the scripts ran inside Redis: {sum(scripted.values())} {scripted}")
    out.append("(INFO commandstats is server-wide: other clients of this Redis would add to it)")


# Running ----------------------------------------------------------------------------


def bench_backend(backend: str, settings: Settings, directory: Path, notes: list[str]) -> list[Row]:
    log(f"{backend}: preparing stores")
    with ExitStack() as stack:
        stores = [
            stack.enter_context(open_store(backend, size, settings, directory))
            for size in settings.sizes
        ]
        rows = [
            Row(backend, path, workers, [], [])
            for path in ("admitted", "denied")
            for workers in settings.workers
        ]
        pairs = 0
        for round_number in range(settings.rounds):
            for row in rows:
                order = stores if pairs % 2 == 0 else stores[::-1]
                pairs += 1
                for store in order:
                    sample = run_cell(store, row.path, row.workers, settings)
                    (row.small if store is stores[0] else row.large).append(sample)
            log(f"  round {round_number + 1}/{settings.rounds} done")
        if settings.explain:
            large = stores[1]
            if backend == "redis":
                explain_redis(large, notes)
            else:
                explain_sql(large, notes)
    return rows


def machine_facts(settings: Settings) -> list[str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    facts = [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"nproc: {os.cpu_count()}, CPU: {cpu}",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]
    if "postgresql" in settings.backends:
        engine = create_engine(settings.pg_admin_url)
        try:
            with engine.connect() as connection:
                version = connection.execute(text("SHOW server_version")).scalar()
            facts.append(f"PostgreSQL {version}")
        finally:
            engine.dispose()
    if "redis" in settings.backends:
        client = redis.Redis.from_url(settings.redis_url)
        try:
            facts.append(f"Redis {client.info('server')['redis_version']}")
        finally:
            client.close()
    return facts


def load_string(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small stores, one round, a few hundred checks",
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 5; quick 1)")
    parser.add_argument(
        "--checks",
        type=int,
        help=f"timed checks per measurement (default per backend: {CHECKS}; quick 200)",
    )
    parser.add_argument(
        "--large-events", type=int, help="events in the large store (default 10^6; quick 2*10^4)"
    )
    parser.add_argument(
        "--large-slots", type=int, help="other slots in the large store (default 10^5; quick 10^4)"
    )
    parser.add_argument(
        "--identities",
        type=int,
        default=500,
        help="senders the admitted checks spread over (default %(default)s)",
    )
    parser.add_argument(
        "--no-explain", action="store_true", help="skip the statement plans and round-trip counts"
    )
    parser.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help="PostgreSQL admin database URL (env OSFMILTER_BENCH_PG)",
    )
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="Redis URL (env OSFMILTER_BENCH_REDIS)"
    )
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    rounds = args.rounds or (1 if quick else 5)
    checks = {b: args.checks or (200 if quick else CHECKS[b]) for b in BACKENDS}
    large = Size(
        "large",
        args.large_events or (20_000 if quick else 1_000_000),
        args.large_slots or (10_000 if quick else 100_000),
    )
    return Settings(
        backends=backends,
        sizes=(Size("small", 1_000, 1_000), large),
        workers=(1, 16),
        rounds=rounds,
        checks=checks,
        identities=args.identities,
        explain=not args.no_explain,
        pg_admin_url=args.pg_url,
        redis_url=args.redis_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    facts = machine_facts(settings)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="osf_bench_") as directory:
        for backend in settings.backends:
            rows.extend(bench_backend(backend, settings, Path(directory), notes))
    print("\n".join(f"- {fact}" for fact in facts))
    print(
        f"- load average (1, 5, 15 min) before: {load_string(load_before)}, "
        f"after: {load_string(os.getloadavg())}"
    )
    small, large = settings.sizes
    print(
        f"- stores: {small.name} = {small.events:,} events + {small.slots:,} other slots; "
        f"{large.name} = {large.events:,} events + {large.slots:,} other slots"
    )
    per = ", ".join(f"{b} {settings.checks[b]:,}" for b in settings.backends)
    print(
        f"- {settings.rounds} rounds; timed checks per measurement: {per} "
        f"(after 5 % warm-up); medians over rounds; "
        f"total {time.perf_counter() - started:.0f} s\n"
    )
    print(table(rows, settings.sizes))
    print("\n".join(notes))
    errors = [f"{row.backend} {row.path} ×{row.workers}: {e}" for row in rows for e in row.errors]
    for error in errors[:20]:
        print(f"ERROR {error}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} check(s) failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

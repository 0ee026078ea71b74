"""The sliding window on every shared backend: SQLite, PostgreSQL and Redis.

The concurrency test is the one that matters: 8 processes × 8 threads race
for one identity's window and exactly the limit gets in.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from osfmilter.limits.rate import Bucket, RateDenied, RateLimiter, Reservation
from osfmilter.limits.redisrate import RedisRateLimiter
from osfmilter.limits.sqlrate import SqlRateLimiter
from osfmilter.storage.db import make_engine
from tests.fakes import FixedClock
from tests.harness.database import reset_database


@dataclass(frozen=True)
class Target:
    kind: str  # "sql" or "redis"
    target: str  # a database URL or a Redis key prefix


REDIS_URL = os.environ.get("OSFMILTER_TEST_REDIS", "redis://127.0.0.1:6379/0")
ALL_100 = (Bucket("all", 100),)


def redis_limiter(clock: FixedClock, prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(REDIS_URL, clock, 300.0, 900.0, prefix=prefix)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"osftest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> Iterator[Target]:
    """Where the windows live: a migrated SQL database URL, or a Redis key prefix."""
    if request.param == "redis":
        yield Target("redis", redis_prefix)
        return
    url = (f"sqlite:///{tmp_path}/rate.sqlite3" if request.param == "sqlite"
           else request.getfixturevalue("pg_server_url"))
    engine = make_engine(url)
    reset_database(engine)
    engine.dispose()
    yield Target("sql", url)


@pytest.fixture
def make_limiter(backend: Target) -> Iterator[Callable[[FixedClock], RateLimiter]]:
    engines: list[Engine] = []

    def make(clock: FixedClock) -> RateLimiter:
        if backend.kind == "redis":
            return redis_limiter(clock, backend.target)
        engines.append(make_engine(backend.target))
        return SqlRateLimiter(engines[-1], clock, 300.0, 900.0)

    yield make
    for engine in engines:
        engine.dispose()


def admit(limiter: RateLimiter, identity: str = "server:192.0.2.1/32",
          buckets: tuple[Bucket, ...] = ALL_100) -> Reservation | None:
    outcome = limiter.reserve(identity, buckets)
    if isinstance(outcome, RateDenied):
        return None
    limiter.commit(outcome)
    return outcome


def test_window_boundaries(make_limiter: Callable[[FixedClock], RateLimiter]) -> None:
    clock = FixedClock(datetime(2026, 11, 1, tzinfo=UTC))
    limiter = make_limiter(clock)
    assert all(admit(limiter) for _ in range(100))
    clock.advance(299)
    denied = limiter.reserve("server:192.0.2.1/32", ALL_100)
    assert isinstance(denied, RateDenied) and denied.retry_after == 1
    clock.advance(1.001)
    assert admit(limiter)
    assert admit(limiter)  # the first 100 all left the window together
    clock.advance(100)
    assert sum(1 for _ in range(200) if admit(limiter)) == 98


def test_pending_reservations_hold_capacity_and_released_ones_free_it(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    clock = FixedClock()
    limiter = make_limiter(clock)
    held = [limiter.reserve("server:x", (Bucket("all", 3),)) for _ in range(3)]
    assert all(isinstance(h, Reservation) for h in held)
    assert isinstance(limiter.reserve("server:x", (Bucket("all", 3),)), RateDenied)
    limiter.release(held[0])  # type: ignore[arg-type]
    assert isinstance(limiter.reserve("server:x", (Bucket("all", 3),)), Reservation)
    # A reservation whose milter died expires after its TTL.
    clock.advance(901)
    assert isinstance(limiter.reserve("server:x", (Bucket("all", 3),)), Reservation)


def test_a_message_accepted_after_its_reservation_expired_still_counts_once(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    """A transaction longer than the TTL: its slot was pruned, yet the accept counts."""
    clock = FixedClock()
    limiter = make_limiter(clock)
    both = (Bucket("all", 2), Bucket("unknown", 2))
    slow = limiter.reserve("server:x", both)
    filler = limiter.reserve("server:x", both)
    assert isinstance(slow, Reservation) and isinstance(filler, Reservation)
    limiter.commit(filler)
    clock.advance(901)  # the reservation expired, the filler left the window...
    other = limiter.reserve("server:x", both)  # ...and this full bucket's prune removed both
    assert isinstance(other, Reservation)
    limiter.commit(slow)
    limiter.commit(slow)  # a repeated commit adds nothing
    limiter.commit(other)
    for bucket in both:
        denied = limiter.reserve("server:x", (bucket,))
        assert isinstance(denied, RateDenied) and denied.bucket == bucket.name


def test_a_message_counts_in_every_bucket_or_none(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    limiter = make_limiter(FixedClock())
    both = (Bucket("all", 100), Bucket("unknown", 10))
    assert sum(1 for _ in range(20) if admit(limiter, buckets=both)) == 10
    # Known-sender mail still has 90 of the 100.
    assert sum(1 for _ in range(200) if admit(limiter)) == 90


def test_identities_do_not_share_windows(make_limiter: Callable[[FixedClock], RateLimiter]) -> None:
    limiter = make_limiter(FixedClock())
    assert sum(1 for _ in range(5) if admit(limiter, "a", (Bucket("all", 2),))) == 2
    assert sum(1 for _ in range(5) if admit(limiter, "b", (Bucket("all", 2),))) == 2


# Concurrency: 8 processes × 8 threads, 2,000 attempts, a limit of 100 ----------------

PROCESSES, THREADS, ATTEMPTS, LIMIT = 8, 8, 2000, 100


def _race(backend: str, target: str, identity: str, queue: multiprocessing.Queue[int]) -> None:
    """One process: its threads try their share of the attempts; report admissions."""
    clock = FixedClock()
    if backend == "redis":
        limiter: RateLimiter = redis_limiter(clock, target)
    else:
        limiter = SqlRateLimiter(make_engine(target, timeout=60), clock, 300.0, 900.0)
    admitted = 0
    lock = threading.Lock()
    per_thread = ATTEMPTS // (PROCESSES * THREADS) + 1

    def worker() -> None:
        nonlocal admitted
        for _ in range(per_thread):
            if admit(limiter, identity, (Bucket("all", LIMIT),)):
                with lock:
                    admitted += 1

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(admitted)


def test_parallel_processes_and_threads_admit_exactly_the_limit(backend: Target) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = context.Queue()
    identity = f"server:{uuid.uuid4().hex[:6]}"
    processes = [
        context.Process(target=_race, args=(backend.kind, backend.target, identity, queue))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert sum(results) == LIMIT

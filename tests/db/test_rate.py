"""The sliding window on every shared backend: SQLite, PostgreSQL and Redis.

The concurrency test is the one that matters: 8 processes × 8 threads race
for one identity's window and exactly the limit gets in.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from osfmilter.config import Config, config_from_dict
from osfmilter.events import EventRecord
from osfmilter.limits.rate import Bucket, RateDenied, RateLimiter, Reservation
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.session import MilterSession
from osfmilter.storage.db import make_engine
from osfmilter.storage.rate import SqlRateLimiter
from osfmilter.storage.redis_rate import RedisRateLimiter
from osfmilter.storage.writer import UNLOCKED
from osfmilter.verdict import CONTINUE, Accept, Refused
from tests.fakes import FakeDirectory, FakeRecorder, FixedClock, identity, services
from tests.harness.database import reset_database


@dataclass(frozen=True)
class Target:
    kind: str  # "sql" or "redis"
    target: str  # a database URL or a Redis key prefix


REDIS_URL = os.environ.get("OSFMILTER_TEST_REDIS", "redis://127.0.0.1:6379/0")
ALL_100 = (Bucket("all", 100),)


def redis_limiter(clock: FixedClock, prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(
        REDIS_URL, clock, 300.0, 900.0, timeout=Config().database.timeout, prefix=prefix
    )


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
    url = (
        f"sqlite:///{tmp_path}/rate.sqlite3"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_server_url")
    )
    engine = make_engine(url, Config().database.timeout)
    reset_database(engine)
    engine.dispose()
    yield Target("sql", url)


@pytest.fixture
def make_limiter(backend: Target) -> Iterator[Callable[[FixedClock], RateLimiter]]:
    engines: list[Engine] = []

    def make(clock: FixedClock) -> RateLimiter:
        if backend.kind == "redis":
            return redis_limiter(clock, backend.target)
        engines.append(make_engine(backend.target, Config().database.timeout))
        return SqlRateLimiter(engines[-1], clock, 300.0, 900.0)

    yield make
    for engine in engines:
        engine.dispose()


def admit(
    limiter: RateLimiter,
    identity: str = "server:192.0.2.1/32",
    buckets: tuple[Bucket, ...] = ALL_100,
) -> Reservation | None:
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


def test_an_expired_reservation_is_admitted_again_only_if_the_window_has_room(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    """A transaction longer than the TTL: its pruned slot is not counted past the limit.

    Before renewals, the late commit put the pruned slot back without the
    lock or a look at the window: three messages in 300 s under a limit of 2.
    """
    clock = FixedClock()
    limiter = make_limiter(clock)
    two = (Bucket("all", 2),)
    slow = limiter.reserve("server:x", two)
    assert isinstance(slow, Reservation) and slow.buckets == two
    clock.advance(901)  # the slow transaction outlived its reservation...
    assert admit(limiter, "server:x", two)  # ...and two others took the window
    clock.advance(1)
    assert admit(limiter, "server:x", two)
    clock.advance(1)
    assert slow.due_for_renewal(clock.now().timestamp())
    denied = limiter.renew(slow)
    assert isinstance(denied, RateDenied) and denied.bucket == "all"
    limiter.commit(slow)  # a late commit without a renewal counts nothing
    clock.advance(299)  # the two others left the window; slow would not have
    assert admit(limiter, "server:x", two)
    assert admit(limiter, "server:x", two)


def test_a_renewed_reservation_counts_once(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    clock = FixedClock()
    limiter = make_limiter(clock)
    both = (Bucket("all", 2), Bucket("unknown", 2))
    slow = limiter.reserve("server:x", both)
    assert isinstance(slow, Reservation)
    assert not slow.due_for_renewal(clock.now().timestamp())
    clock.advance(901)
    assert admit(limiter, "server:x", both)  # its prune removed slow's slots
    renewed = limiter.renew(slow)
    assert isinstance(renewed, Reservation) and renewed.id != slow.id
    limiter.commit(renewed)
    limiter.commit(renewed)  # a repeated commit adds nothing
    for bucket in both:
        denied = limiter.reserve("server:x", (bucket,))
        assert isinstance(denied, RateDenied) and denied.bucket == bucket.name
    clock.advance(301)
    assert admit(limiter, "server:x", both) and admit(limiter, "server:x", both)


def test_a_renewal_gives_back_the_old_slots_even_if_not_yet_pruned(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    """Due 60 s before expiry (other nodes' clocks): the slot may still be there."""
    clock = FixedClock()
    limiter = make_limiter(clock)
    two = (Bucket("all", 2),)
    slow = limiter.reserve("server:x", two)
    clock.advance(850)
    assert isinstance(slow, Reservation) and admit(limiter, "server:x", two)
    renewed = limiter.renew(slow)  # the old slot is given back, not counted twice
    assert isinstance(renewed, Reservation)
    limiter.commit(renewed)
    assert isinstance(limiter.reserve("server:x", two), RateDenied)


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


# The session over each backend: at no instant more than the limit in any window --


class _CommittingRecorder(FakeRecorder):
    """Events in memory; the limiter's commit in a real transaction, as SqlStore runs it."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Any], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None:
        denied = super().record_accept(record, charge, in_time=in_time)
        if also is not None and denied is None:
            assert isinstance(self.limiter, SqlRateLimiter)
            self.limiter.sql.transact(also, order=UNLOCKED)
        return denied


class _Relay:
    """MilterSessions of one registered server whose steps the test interleaves in time."""

    def __init__(self, make_limiter: Callable[[FixedClock], RateLimiter], limit: int) -> None:
        self.clock = FixedClock()
        self.limiter = make_limiter(self.clock)
        self.recorder = _CommittingRecorder(self.limiter)
        config = config_from_dict({"plans": {"free": {"rate_known": limit}}})
        directory = FakeDirectory(by_address={"192.0.2.10": identity()})
        self.services = services(directory, self.recorder, config, self.clock, self.limiter)  # type: ignore[arg-type]
        self.accepted: list[float] = []
        self.origin = self.clock.now().timestamp()

    def start(self) -> MilterSession | None:
        """MAIL and RCPT now (None if refused: the window is full); the message comes later."""
        session = MilterSession(self.services)
        session.connect("192.0.2.10")
        if isinstance(session.mail("<a@example.com>", [], "", "Q"), Refused):
            return None
        assert session.rcpt("<r@example.org>", "Q") == CONTINUE
        return session

    def finish(self, session: MilterSession | None) -> Refused | None:
        """The end of the message: its refusal, or None when it was accepted."""
        assert session is not None
        session.header("From", "a@example.com")
        session.end_of_headers()
        assert session.body(b"hello\r\n") == CONTINUE
        reply = session.end_of_message("Q")
        session.close()
        if isinstance(reply, Accept):
            self.accepted.append(self.clock.now().timestamp())
            return None
        assert isinstance(reply, Refused)
        return reply

    def at(self, moment: float) -> None:
        """Move the clock to this many seconds after the start."""
        self.clock.advance(self.origin + moment - self.clock.now().timestamp())

    def most_in_any_window(self, window: float = 300.0) -> int:
        """A slot counts while accepted_at > now - window: the window is (now - 300, now]."""
        times = sorted(self.accepted)
        return max((sum(1 for t in times if end - window < t <= end) for end in times), default=0)


def test_a_transaction_longer_than_the_reservation_ttl_is_not_counted_past_the_limit(
    make_limiter: Callable[[FixedClock], RateLimiter],
) -> None:
    """The review's case: limit 2, three accepts within 300 s before renewals."""
    relay = _Relay(make_limiter, limit=2)
    slow = relay.start()
    relay.at(901)  # MAIL to end of message outlives reservation_ttl (900 s)
    assert relay.finish(relay.start()) is None
    relay.at(902)
    assert relay.finish(relay.start()) is None
    relay.at(903)
    reply = relay.finish(slow)
    assert reply is not None and (reply.code, reply.enhanced_code) == (451, "4.7.1")
    assert relay.recorder.records[-1].reason == "rate_limit"
    assert relay.most_in_any_window() == 2
    relay.at(903 + 300)  # the other two left the window: slow's retry goes through
    assert relay.finish(relay.start()) is None
    assert relay.finish(relay.start()) is None


def _schedule(chance: random.Random) -> list[tuple[float, int]]:
    """Transactions every 5 to 60 s, a quarter of them longer than a reservation, or nearly.

    Each gives two steps (when, its number): its MAIL, then its message.
    """
    steps: list[tuple[float, int]] = []
    when, number = 0.0, 0
    while when < 2400:
        long = chance.random() < 0.25
        duration = chance.uniform(850, 1500) if long else chance.uniform(0.5, 5)
        steps += [(when, number), (when + duration, number)]
        number += 1
        when += chance.uniform(5, 60)
    return sorted(steps)


@pytest.mark.parametrize("seed", range(8))
def test_long_and_short_transactions_never_exceed_the_limit_in_any_window(
    make_limiter: Callable[[FixedClock], RateLimiter],
    seed: int,
) -> None:
    """Before renewals, seeds 2 and 7 accepted 4 and 5 messages within 300 s."""
    relay = _Relay(make_limiter, limit=3)
    sessions: dict[int, MilterSession | None] = {}
    for when, number in _schedule(random.Random(seed)):
        relay.at(when)
        if number not in sessions:
            sessions[number] = relay.start()
        elif sessions[number] is not None:
            relay.finish(sessions[number])
    assert len(relay.accepted) >= 10
    assert relay.most_in_any_window() <= 3

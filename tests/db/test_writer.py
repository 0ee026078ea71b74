"""Group commit: several sessions' writes in one transaction, each answered after it.

Both backends. The sessions' work is queued by hand here so that one call
is sure to find a batch waiting; the threaded case shows the same under
real concurrency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from osfmilter.config import Config
from osfmilter.errors import StorageError
from osfmilter.limits.rate import Bucket
from osfmilter.storage.db import make_engine, write_lock
from osfmilter.storage.direct import Cursor, DirectSql, Statement
from osfmilter.storage.rate import SqlRateLimiter
from osfmilter.storage.writer import UNLOCKED, GroupCommit, Later, Order, _Work
from tests.fakes import FixedClock
from tests.harness.database import reset_database

INSERT = Statement(
    "INSERT INTO rate_slots (\"key\", reservation, pending, at) VALUES (:key, 'r', :pending, 0)"
)


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/writer.sqlite3", timeout=1.0)
    reset_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def quick(db_url: str) -> Iterator[Engine]:
    """Either backend, waiting at most a second for the write lock."""
    engine = make_engine(db_url, timeout=1.0)
    yield engine
    engine.dispose()


def writer_of(sql: DirectSql) -> GroupCommit:
    return sql._writes


def insert(key: str) -> Callable[[Cursor], str]:
    def job(cursor: Cursor) -> str:
        cursor.execute(INSERT, {"key": key, "pending": True})
        return key

    return job


def keys(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(text('SELECT "key" FROM rate_slots')).scalars())


def queue(writer: GroupCommit, job: Callable[[Cursor], Any]) -> Future[Any]:
    """Work another session queued and is waiting for."""
    future: Future[Any] = Future()
    writer._queue.put(_Work(UNLOCKED, job, future))
    return future


def test_a_failing_job_takes_back_only_its_own_writes(quick: Engine) -> None:
    sql = DirectSql(quick)
    writer = writer_of(sql)

    def insert_then_fail(cursor: Cursor) -> None:
        cursor.execute(INSERT, {"key": "b", "pending": True})
        raise ValueError("over the allowance")

    first, failing = queue(writer, insert("a")), queue(writer, insert_then_fail)
    assert sql.transact(insert("c")) == "c"  # commits the queued ones with it
    assert first.result(timeout=0) == "a"
    with pytest.raises(ValueError, match="allowance"):
        failing.result(timeout=0)
    assert keys(quick) == {"a", "c"}


def test_a_database_error_belongs_to_the_job_that_caused_it(quick: Engine) -> None:
    """PostgreSQL sends a batch's statements without waiting: an error still lands right."""
    sql = DirectSql(quick)
    writer = writer_of(sql)

    def violate(cursor: Cursor) -> None:  # nothing read back: the error comes later
        cursor.execute(INSERT, {"key": None, "pending": True})

    first, failing = queue(writer, insert("a")), queue(writer, violate)
    assert sql.transact(insert("c")) == "c"
    assert first.result(timeout=0) == "a"
    with pytest.raises(StorageError, match=r"(?i)null"):
        failing.result(timeout=0)
    assert keys(quick) == {"a", "c"}


def test_a_failed_commit_answers_every_session_with_the_error(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    writer = writer_of(sql)

    def violate_at_commit(cursor: Cursor) -> None:
        cursor.execute(Statement("PRAGMA defer_foreign_keys = ON"))
        cursor.execute(
            Statement(
                "INSERT INTO scanned_domains (customer_id, domain, created_at) "
                "VALUES (999, 'nobody.example', '2026-11-29 00:00:00.000000')"
            )
        )

    queued = queue(writer, insert("a"))
    queue(writer, violate_at_commit)
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        sql.transact(insert("c"))
    with pytest.raises(StorageError):
        queued.result(timeout=0)
    assert keys(sqlite) == set()
    assert sql.transact(insert("d")) == "d"  # and the next write works
    assert keys(sqlite) == {"d"}


def test_a_session_waits_at_most_the_database_timeout(quick: Engine) -> None:
    sql = DirectSql(quick)
    lock, _ = write_lock(quick)
    with lock, pytest.raises(StorageError, match="waited too long"):
        sql.transact(insert("late"))
    assert keys(quick) == set()  # given up, so never written later either
    assert sql.transact(insert("next")) == "next"
    assert keys(quick) == {"next"}


def test_concurrent_sessions_each_get_their_own_answer(quick: Engine) -> None:
    sql = DirectSql(quick)
    barrier = threading.Barrier(16)

    def session(number: int) -> str:
        barrier.wait()
        return sql.transact(insert(f"k{number}"))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(session, range(16 * 25)))
    assert answers == [f"k{n}" for n in range(16 * 25)]
    assert keys(quick) == set(answers)


def test_a_batch_runs_in_the_order_its_work_asks_for(quick: Engine) -> None:
    """Advisory locks before volume rows, each sorted: two nodes lock in one order."""
    sql = DirectSql(quick)
    writer = writer_of(sql)
    ran: list[str] = []

    def note(name: str) -> Callable[[Cursor], None]:
        return lambda cursor: ran.append(name)

    for name, order in [
        ("event", UNLOCKED),
        ("volume b", Order.volume_row("2026-05", "outbound", 1, "b.example")),
        ("lock 9", Order.sender_lock(9)),
        ("volume a", Order.volume_row("2026-05", "outbound", 1, "a.example")),
        ("inbound", Order.volume_row("2026-05", "inbound", 2, "z.example")),
    ]:
        writer._queue.put(_Work(order, note(name), Future()))
    sql.transact(note("lock -3"), order=Order.sender_lock(-3))
    assert ran == ["lock -3", "lock 9", "inbound", "volume a", "volume b", "event"]


@pytest.mark.postgres
def test_a_connection_postgresql_dropped_is_replaced_without_losing_work(
    pg_server_url: str,
) -> None:
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    try:
        sql = DirectSql(engine)
        sql.transact(insert("before"))
        backend = sql.transact(
            lambda cursor: cursor.execute(Statement("SELECT pg_backend_pid()")).one()[0]
        )
        with engine.begin() as admin:  # a server restart, a proxy's timeout...
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        assert sql.transact(insert("after")) == "after"
        assert keys(engine) == {"before", "after"}
    finally:
        engine.dispose()


def test_disposing_of_the_engine_gives_the_connection_back(quick: Engine) -> None:
    """Else the checked-out connection would keep every test's engine alive."""
    sql = DirectSql(quick)
    sql.transact(insert("a"))
    assert writer_of(sql)._connection is not None
    quick.dispose()
    assert writer_of(sql)._connection is None
    assert sql.transact(insert("b")) == "b"  # a disposed engine can still be used
    assert keys(quick) == {"a", "b"}


@pytest.mark.postgres
def test_a_reservation_leaves_the_batch_durable(pg_server_url: str) -> None:
    """Other sessions' accepts share the transaction: it must wait for the WAL flush."""
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    try:
        limiter = SqlRateLimiter(engine, FixedClock(), window=300, reservation_ttl=900)
        sql = DirectSql(engine)
        queue(
            writer_of(sql),
            lambda cursor: limiter._reserve_in(cursor, "server:x", (Bucket("all", 10),), now=0.0),
        )
        setting = sql.transact(
            lambda cursor: cursor.execute(
                Statement("SELECT current_setting('synchronous_commit')")
            ).one()[0]
        )
        assert setting == "on"
    finally:
        engine.dispose()


def test_sqlite_syncs_every_commit_to_disk(sqlite: Engine) -> None:
    """NORMAL in WAL mode can lose committed accepts on power loss: FULL (2) cannot."""
    with sqlite.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    sql = DirectSql(sqlite)  # the mail path's connections come from the same pool
    synchronous = Statement("PRAGMA synchronous")
    assert sql.transact(lambda cursor: cursor.execute(synchronous).one()[0]) == 2
    # A batch of only reservations (lost with their transactions in a power
    # cut) does not wait for the disk; the next durable one does again.
    assert sql.transact(lambda cursor: cursor.execute(synchronous).one()[0], durable=False) == 1
    assert sql.transact(lambda cursor: cursor.execute(synchronous).one()[0]) == 2


def test_a_batch_with_one_durable_job_syncs(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    writer = writer_of(sql)
    synchronous = Statement("PRAGMA synchronous")
    seen: list[int] = []
    lock, _ = writer.write_lock
    with lock:  # both jobs queue, then run in one batch
        threads = [
            threading.Thread(
                target=lambda d=d: seen.append(
                    sql.transact(lambda cursor: cursor.execute(synchronous).one()[0], durable=d)
                )
            )
            for d in (False, True)
        ]
        for thread in threads:
            thread.start()
        while writer._queue.qsize() < 2:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert seen == [2, 2]


@pytest.mark.postgres
def test_postgresql_waits_once_per_batch_and_reruns_it_to_place_an_error(
    pg_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch syncs once; a job that raises makes it run again, a sync per job."""
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    try:
        sql = DirectSql(engine)
        writer = writer_of(sql)
        syncs: list[bool] = []
        sync = writer._sync

        def counted_sync(after_error: bool = False) -> None:
            syncs.append(after_error)
            sync(after_error)

        monkeypatch.setattr(writer, "_sync", counted_sync)
        runs: list[str] = []

        def counted(key: str | None) -> Callable[[Cursor], str | None]:
            def job(cursor: Cursor) -> str | None:
                runs.append(str(key))
                cursor.execute(INSERT, {"key": key, "pending": True})
                return key

            return job

        queue(writer, counted("a")), queue(writer, counted("b"))
        assert sql.transact(counted("c")) == "c"
        assert (runs, syncs) == (["a", "b", "c"], [False])

        runs.clear()
        syncs.clear()
        first, failing = queue(writer, counted("d")), queue(writer, counted(None))
        assert sql.transact(counted("e")) == "e"
        assert first.result(timeout=0) == "d"
        with pytest.raises(StorageError, match=r"(?i)null"):
            failing.result(timeout=0)
        # Pipelined, then again with a sync per job; committed once.
        assert runs == ["d", "None", "e", "d", "None", "e"]
        assert keys(engine) == {"a", "b", "c", "d", "e"}

        # A job's own refusal too: the quick way has no savepoint to take it back.
        runs.clear()

        def refuse(cursor: Cursor) -> None:
            runs.append("refuse")
            cursor.execute(INSERT, {"key": "refused", "pending": True})
            raise ValueError("over the allowance")

        first, refused = queue(writer, counted("f")), queue(writer, refuse)
        assert sql.transact(counted("g")) == "g"
        assert first.result(timeout=0) == "f"
        with pytest.raises(ValueError, match="allowance"):
            refused.result(timeout=0)
        assert runs == ["f", "refuse", "f", "refuse", "g"]
        assert keys(engine) == {"a", "b", "c", "d", "e", "f", "g"}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM rate_slots")).scalar_one() == 7
    finally:
        engine.dispose()


def test_a_later_answer_is_read_before_the_commit_and_can_refuse(quick: Engine) -> None:
    """A job that answers Later: read in its transaction; what the read raises undoes the job."""
    sql = DirectSql(quick)
    writer = writer_of(sql)
    returning = Statement(
        'INSERT INTO rate_slots ("key", reservation, pending, at) '
        "VALUES (:key, 'r', :pending, 0) RETURNING \"key\""
    )

    def send(key: str, refuse: bool) -> Callable[[Cursor], Later[str]]:
        def job(cursor: Cursor) -> Later[str]:
            sent = cursor.another().execute(returning, {"key": key, "pending": True})
            cursor.execute(INSERT, {"key": f"{key}-2", "pending": True})

            def read() -> str:
                (inserted,) = sent.one()
                if refuse:
                    raise ValueError(f"refused {inserted}")
                return str(inserted)

            return Later(read)

        return job

    first = queue(writer, send("a", refuse=False))
    refused = queue(writer, send("b", refuse=True))
    assert sql.transact_later(send("c", refuse=False)) == "c"
    assert first.result(timeout=0) == "a"
    with pytest.raises(ValueError, match="refused b"):
        refused.result(timeout=0)
    assert keys(quick) == {"a", "a-2", "c", "c-2"}


@pytest.mark.postgres
def test_a_batch_that_timed_out_is_not_run_again(pg_server_url: str) -> None:
    """PostgreSQL cancelled a statement at [database] timeout: no job's fault, so the
    batch fails then, instead of waiting the timeout once more the careful way."""
    engine = make_engine(pg_server_url, timeout=1.0)
    reset_database(engine)
    try:
        sql = DirectSql(engine)
        sql.transact(insert("held"))
        runs: list[str] = []

        def update_held(cursor: Cursor) -> None:
            runs.append("update")
            cursor.execute(Statement("UPDATE rate_slots SET at = 1 WHERE \"key\" = 'held'"))

        with engine.connect() as other, other.begin():
            other.execute(text("SELECT id FROM rate_slots WHERE \"key\" = 'held' FOR UPDATE"))
            with pytest.raises(StorageError, match=r"(?i)cancel"):
                sql.transact(update_held)
        assert runs == ["update"]
        assert sql.transact(insert("after")) == "after"  # the connection is fine
    finally:
        engine.dispose()


def test_a_transaction_that_ended_under_a_job_is_no_success_for_anyone(sqlite: Engine) -> None:
    """A job that swallows the error SQLite ended the transaction with commits nothing."""
    sql = DirectSql(sqlite)
    writer = writer_of(sql)

    def end_it_quietly(cursor: Cursor) -> str:
        cursor.raw.execute("ROLLBACK")  # as SQLite does by itself on SQLITE_FULL
        return "fine"

    queued = queue(writer, insert("a"))
    queue(writer, end_it_quietly)
    with pytest.raises(StorageError, match="ended before its commit"):
        sql.transact(insert("c"))
    with pytest.raises(StorageError):
        queued.result(timeout=0)
    assert keys(sqlite) == set()
    assert sql.transact(insert("d")) == "d"

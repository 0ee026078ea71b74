"""SQLite group commit: several sessions' writes in one transaction, each answered after it.

The sessions' work is queued by hand here so that one call is sure to find
a batch waiting; the threaded case shows the same under real concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from osfmilter.errors import StorageError
from osfmilter.storage.db import make_engine, sqlite_write_lock
from osfmilter.storage.direct import Cursor, DirectSql, Statement
from osfmilter.storage.writer import SqliteWriter
from tests.harness.database import reset_database

INSERT = Statement("INSERT INTO rate_slots (\"key\", reservation, pending, at) "
                   "VALUES (:key, 'r', :pending, 0)")


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/writer.sqlite3", timeout=1.0)
    reset_database(engine)
    yield engine
    engine.dispose()


def writer_of(sql: DirectSql) -> SqliteWriter:
    assert sql._writer is not None
    return sql._writer


def insert(key: str) -> Callable[[Cursor], str]:
    def job(cursor: Cursor) -> str:
        cursor.execute(INSERT, {"key": key, "pending": True})
        return key
    return job


def keys(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(text('SELECT "key" FROM rate_slots')).scalars())


def queue(writer: SqliteWriter, job: Callable[[Cursor], Any]) -> Future[Any]:
    """Work another session queued and is waiting for."""
    future: Future[Any] = Future()
    writer._queue.put((job, future))
    return future


def test_a_failing_job_takes_back_only_its_own_writes(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    writer = writer_of(sql)

    def insert_then_fail(cursor: Cursor) -> None:
        cursor.execute(INSERT, {"key": "b", "pending": True})
        raise ValueError("over the allowance")

    first, failing = queue(writer, insert("a")), queue(writer, insert_then_fail)
    assert sql.transact(insert("c")) == "c"  # commits the queued ones with it
    assert first.result(timeout=0) == "a"
    with pytest.raises(ValueError, match="allowance"):
        failing.result(timeout=0)
    assert keys(sqlite) == {"a", "c"}


def test_a_failed_commit_answers_every_session_with_the_error(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    writer = writer_of(sql)

    def violate_at_commit(cursor: Cursor) -> None:
        cursor.execute(Statement("PRAGMA defer_foreign_keys = ON"))
        cursor.execute(Statement(
            "INSERT INTO scanned_domains (customer_id, domain, created_at) "
            "VALUES (999, 'nobody.example', '2026-11-29 00:00:00.000000')"))

    queued = queue(writer, insert("a"))
    queue(writer, violate_at_commit)
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        sql.transact(insert("c"))
    with pytest.raises(StorageError):
        queued.result(timeout=0)
    assert keys(sqlite) == set()
    assert sql.transact(insert("d")) == "d"  # and the next write works
    assert keys(sqlite) == {"d"}


def test_a_session_waits_at_most_the_database_timeout(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    lock, _ = sqlite_write_lock(sqlite)
    with lock, pytest.raises(StorageError, match="waited too long"):
        sql.transact(insert("late"))
    assert keys(sqlite) == set()  # given up, so never written later either
    assert sql.transact(insert("next")) == "next"
    assert keys(sqlite) == {"next"}


def test_concurrent_sessions_each_get_their_own_answer(sqlite: Engine) -> None:
    sql = DirectSql(sqlite)
    barrier = threading.Barrier(16)

    def session(number: int) -> str:
        barrier.wait()
        return sql.transact(insert(f"k{number}"))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(session, range(16 * 25)))
    assert answers == [f"k{n}" for n in range(16 * 25)]
    assert keys(sqlite) == set(answers)

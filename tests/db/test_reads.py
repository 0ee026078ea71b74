"""DirectSql.read: the mail path's reads on connections it keeps between messages."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, text

from osfmilter.config import Config
from osfmilter.errors import StorageError
from osfmilter.storage.db import make_engine
from osfmilter.storage.direct import KEPT_READERS, Cursor, DirectSql, Statement
from tests.harness.database import reset_database

VERSION = Statement("SELECT version FROM registry_version")
BACKEND = Statement("SELECT pg_backend_pid()")


def version(cursor: Cursor) -> int:
    return int(cursor.execute(VERSION).one()[0])


def test_reads_reuse_their_connection_and_see_each_commit(engine: Engine) -> None:
    sql = DirectSql(engine)
    assert sql.read(version) == 1
    kept = list(sql._readers)
    with engine.begin() as connection:
        connection.execute(text("UPDATE registry_version SET version = 7"))
    assert sql.read(version) == 7  # no transaction of its own held a snapshot
    assert sql._readers == kept


def test_a_failed_read_is_a_storage_error_and_keeps_nothing_broken(engine: Engine) -> None:
    sql = DirectSql(engine)
    with pytest.raises(StorageError, match=r"(?i)no such table|does not exist"):
        sql.read(lambda cursor: cursor.execute(Statement("SELECT * FROM nowhere")).all())
    assert sql.read(version) == 1


def test_at_most_a_few_connections_are_kept(engine: Engine) -> None:
    sql = DirectSql(engine)
    inside = threading.Barrier(KEPT_READERS + 2)

    def wait_inside(cursor: Cursor) -> int:
        inside.wait(timeout=10)
        return version(cursor)

    threads = [
        threading.Thread(target=sql.read, args=(wait_inside,)) for _ in range(KEPT_READERS + 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(sql._readers) == KEPT_READERS
    engine.dispose()  # the kept ones are closed with the engine's pool
    assert sql._readers == []
    assert sql.read(version) == 1


@pytest.mark.postgres
def test_a_kept_connection_postgresql_dropped_is_replaced(pg_server_url: str) -> None:
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    try:
        sql = DirectSql(engine)
        backend = sql.read(lambda cursor: cursor.execute(BACKEND).one()[0])
        with engine.begin() as admin:  # a server restart, a proxy's timeout...
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        assert sql.read(version) == 1
        assert sql.read(lambda cursor: cursor.execute(BACKEND).one()[0]) != backend
    finally:
        engine.dispose()

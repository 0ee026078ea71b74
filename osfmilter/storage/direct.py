"""The mail path's statements, sent straight to the database driver.

Every message costs a handful of statements. Through SQLAlchemy each one
paid more in execution context, cache lookup and event dispatch than SQLite
takes to run it (bench/RESULTS.md, 'Figures the code cited'); so the
milter's hot statements are plain SQL on the driver's own connection, taken
from the engine's pool, which still owns connecting and pre-ping; the group
commit and the reads keep theirs between messages.
SQLAlchemy keeps the schema, the migrations, the CLI and the reports.

The SQL is written once with named parameters (``:name``) in the dialect
both databases share, and rewritten to psycopg's ``%(name)s`` for PostgreSQL.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.errors import StorageError
from osfmilter.health import BackendHealth
from osfmilter.storage.db import describe
from osfmilter.storage.writer import UNLOCKED, Later, Order, group_commit

T = TypeVar("T")
HEALTH_NAME = "database"
# Reads kept connections for: about as many as run at once on a busy relay.
KEPT_READERS = 8
_NAMED = re.compile(r":(\w+)")


class Statement:
    """One SQL text, ready for either driver."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.for_psycopg = _NAMED.sub(r"%(\1)s", sql)

    def text(self, dialect: str) -> str:
        return self.for_psycopg if dialect == "postgresql" else self.sql


class Cursor:
    """A driver cursor that takes :class:`Statement` s."""

    def __init__(self, cursor: Any, dialect: str, family: list[Any] | None = None) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self._family = [cursor] if family is None else family  # this one and its others

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Cursor:
        self._cursor.execute(statement.text(self.dialect), params or {})
        return self

    def executemany(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        self._cursor.executemany(statement.text(self.dialect), rows)

    # Each read takes every row: an SQLite statement read only in part stays
    # "in progress", and SQLite then refuses a savepoint or the commit.

    def one(self) -> tuple[Any, ...]:
        row = self.first()
        if row is None:
            raise StorageError("a statement that returns one row returned none")
        return row

    def first(self) -> tuple[Any, ...] | None:
        rows = self._cursor.fetchall()
        return tuple(rows[0]) if rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    def another(self) -> Cursor:
        """A second cursor on the same connection and transaction (closed with this one)."""
        cursor = self._cursor.connection.cursor()
        self._family.append(cursor)
        return Cursor(cursor, self.dialect, self._family)

    def close(self) -> None:
        """Closes this cursor and every other one made from it.

        On SQLite a statement a job sent but nobody read (a batch given up
        halfway) would otherwise stay in progress, and the next savepoint
        or commit on the connection would be refused.
        """
        for cursor in self._family:
            cursor.close()
        self._family.clear()

    @property
    def raw(self) -> Any:
        """The driver's own cursor, for statements without parameters."""
        return self._cursor


class DirectSql:
    """Short transactions on pooled driver connections; any failure is a StorageError."""

    def __init__(self, engine: Engine, health: BackendHealth | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.health = health or BackendHealth()
        self._errors = (SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
        dialect = self.dialect
        self._writes = group_commit(
            engine,
            self.health,
            wrap_cursor=lambda cursor: Cursor(cursor, dialect),
            describe=describe,
            health_name=HEALTH_NAME,
        )
        self._readers_lock = threading.Lock()
        self._readers: list[Any] = []
        # A weak reference: a listener holding this object would keep it alive
        # as long as the engine, and the engine alive through the kept connections.
        reference = weakref.ref(self)
        event.listen(engine, "engine_disposed", lambda engine: _if_alive(reference, engine))

    def at(self, moment: datetime) -> Any:
        """A timestamp as the UTC columns hold it (SQLAlchemy's layout on SQLite)."""
        moment = moment.astimezone(UTC)
        if self.dialect == "sqlite":
            return moment.replace(tzinfo=None).isoformat(" ", "microseconds")
        return moment

    def transact(
        self, job: Callable[[Cursor], T], order: Order = UNLOCKED, durable: bool = True
    ) -> T:
        """``job(cursor)`` in a write transaction: committed when it returns, undone if it raises.

        The transaction may hold other sessions' work too (storage.writer),
        run in ``order``. On SQLite it holds the write lock (BEGIN IMMEDIATE)
        from the start, so a counter read in it cannot change before the
        commit; on PostgreSQL the job locks what it must. ``durable=False``:
        see storage.writer.GroupCommit.run.
        """
        result: T = self._writes.run(job, order, durable)
        return result

    def transact_later(
        self, job: Callable[[Cursor], Later[T]], order: Order = UNLOCKED, durable: bool = True
    ) -> T:
        """As transact, for a job that only sends statements and reads their outcome Later.

        On PostgreSQL the outcome is read once the whole batch is sent, so
        the job adds no wait of its own (storage.writer).
        """
        result: T = self._writes.run(job, order, durable)
        return result

    def read(self, job: Callable[[Cursor], T]) -> T:
        """``job(cursor)`` outside a transaction: each statement sees the last commit.

        SQLite runs in autocommit (see storage.db); PostgreSQL is told so,
        which saves a BEGIN and a COMMIT round trip. The connection is one
        this object keeps for reads, so it is not pinged on every message
        (the pool's pre-ping was a round trip of its own: bench/RESULTS.md,
        'Figures the code cited'). A kept connection that the server dropped
        meanwhile is replaced and the job run once more.
        """
        for attempt in (1, 2):
            connection, kept = self._reader()
            try:
                result = job(Cursor(connection.cursor(), self.dialect))
            except self._errors as exc:
                if self.dialect == "postgresql" and _broken(connection.dbapi_connection):
                    connection.invalidate()  # not kept, not back into the pool
                    if kept and attempt == 1:
                        continue
                else:
                    self._keep(connection)
                self._failed(exc)
            except BaseException:
                self._keep(connection)
                raise
            self._keep(connection)
            self.health.ok(HEALTH_NAME)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _reader(self) -> tuple[Any, bool]:
        """A kept connection for a read, or a new one from the pool: (connection, kept)."""
        with self._readers_lock:
            if self._readers:
                return self._readers.pop(), True
        try:
            connection = self.engine.raw_connection()
        except self._errors as exc:
            self._failed(exc)
        if self.dialect == "postgresql":
            dbapi: Any = connection.dbapi_connection
            dbapi.autocommit = True
        return connection, False

    def _keep(self, connection: Any) -> None:
        with self._readers_lock:
            if len(self._readers) < KEPT_READERS:
                self._readers.append(connection)
                return
        if self.dialect == "postgresql" and not _broken(connection.dbapi_connection):
            connection.dbapi_connection.autocommit = False
        connection.close()  # back to the pool

    def _give_back_readers(self, engine: Engine) -> None:
        """On dispose: close the kept connections (their pool is gone)."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for connection in readers:
            connection.invalidate()

    def _failed(self, exc: BaseException) -> NoReturn:
        problem = describe(exc)
        self.health.failed(HEALTH_NAME, problem)
        raise StorageError(problem) from exc


def _if_alive(reference: weakref.ref[DirectSql], engine: Engine) -> None:
    sql = reference()
    if sql is not None:
        sql._give_back_readers(engine)


def _broken(dbapi_connection: Any) -> bool:
    """A psycopg connection that lost its server (or was closed) cannot be reused."""
    return bool(getattr(dbapi_connection, "broken", False) or dbapi_connection.closed)

"""The mail path's statements, sent straight to the database driver.

Every message costs a handful of statements (bench/README.md). Through
SQLAlchemy each one paid ~50 µs of execution context, cache lookup and event
dispatch, more than SQLite takes to run it; so the milter's hot statements
are plain SQL on the driver's own connection, taken from (and returned to)
the engine's pool, which still owns connecting, pre-ping and recycling.
SQLAlchemy keeps the schema, the migrations, the CLI and the reports.

The SQL is written once with named parameters (``:name``) in the dialect
both databases share, and rewritten to psycopg's ``%(name)s`` for PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.errors import StorageError
from osfmilter.health import BackendHealth
from osfmilter.storage.db import describe, sqlite_write_lock

HEALTH_NAME = "database"
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

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> Cursor:
        self._cursor.execute(statement.text(self.dialect), params or {})
        return self

    def executemany(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        self._cursor.executemany(statement.text(self.dialect), rows)

    def one(self) -> tuple[Any, ...]:
        row = self._cursor.fetchone()
        if row is None:
            raise StorageError("a statement that returns one row returned none")
        return tuple(row)

    def first(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


class DirectSql:
    """Short transactions on pooled driver connections; any failure is a StorageError."""

    def __init__(self, engine: Engine, health: BackendHealth | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.health = health or BackendHealth()
        self._errors = (SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
        self._write_lock = sqlite_write_lock(engine) if self.dialect == "sqlite" else None

    def at(self, moment: datetime) -> Any:
        """A timestamp as the UTC columns hold it (SQLAlchemy's layout on SQLite)."""
        moment = moment.astimezone(UTC)
        if self.dialect == "sqlite":
            return moment.replace(tzinfo=None).isoformat(" ", "microseconds")
        return moment

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self._connection(write=False) as cursor:
            yield cursor

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        """A write transaction, committed when the block ends, rolled back if it raises.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), after
        the other writers of this process, so a counter read in it cannot
        change before the commit; PostgreSQL locks the rows it writes.
        """
        with self._connection(write=True) as cursor:
            yield cursor

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Cursor]:
        try:
            connection = self.engine.raw_connection()
        except self._errors as exc:
            self._failed(exc)
        try:
            with self._transaction(connection, write) as cursor:
                yield cursor
        except self._errors as exc:
            if self.dialect == "postgresql" and _broken(connection.dbapi_connection):
                connection.invalidate()  # not back into the pool
            self._failed(exc)
        finally:
            connection.close()  # back to the pool, which rolls back anything left open
        self.health.ok(HEALTH_NAME)

    @contextmanager
    def _transaction(self, connection: Any, write: bool) -> Iterator[Cursor]:
        cursor = Cursor(connection.cursor(), self.dialect)
        if self.dialect != "sqlite":
            try:
                yield cursor
            except BaseException:
                if not _broken(connection.dbapi_connection):
                    connection.rollback()
                raise
            connection.commit()
            return
        if not write:  # autocommit (see storage.db): each read sees the last commit
            yield cursor
            return
        assert self._write_lock is not None
        lock, timeout = self._write_lock
        if not lock.acquire(timeout=timeout):
            raise StorageError("waited too long for the database write lock")
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                if connection.in_transaction:  # SQLite rolls back by itself on some errors
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            lock.release()

    def _failed(self, exc: BaseException) -> NoReturn:
        problem = describe(exc) if isinstance(exc, SQLAlchemyError) else _first_line(exc)
        self.health.failed(HEALTH_NAME, problem)
        raise StorageError(problem) from exc


def _broken(dbapi_connection: Any) -> bool:
    """A psycopg connection that lost its server (or was closed) cannot be reused."""
    return bool(getattr(dbapi_connection, "broken", False) or dbapi_connection.closed)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

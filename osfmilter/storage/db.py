"""Engines and schema migrations for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import enum
import importlib.resources
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from osfmilter.errors import ConfigError, StorageError, UsageError

log = logging.getLogger(__name__)

# Enough for every libmilter worker that may be inside a database call at once;
# more wait (at most [database] timeout) rather than open and close connections.
SQLITE_POOL_SIZE = 64


class Access(enum.Enum):
    """What a user of the database may do to it (see make_engine)."""

    CREATE = "create"  # the milter and the writing commands: SQLite's file is made if missing
    EXISTING = "existing"  # writes, but only to a database that is already there
    READ_ONLY = "read-only"  # commands that only look: no file made, no write


class MissingDatabase(ConfigError):
    """There is no SQLite file where the configuration points, and none may be made."""


def make_engine(url: str, timeout: float, access: Access = Access.CREATE) -> Engine:
    """An engine with bounded waits ([database] timeout), so a slow or locked database
    tempfails mail.

    sqlite3 creates the file on connect: unless ``access`` is CREATE, a
    missing SQLite file is a MissingDatabase instead. READ_ONLY opens the
    file with mode=ro and PostgreSQL sessions read-only, so a command that
    only looks cannot change the database by mistake either.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"database.url {safe_url(url)!r} is not an SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if backend == "sqlite":
        parsed = _sqlite_file(parsed, url, access)
        connect_args = {"timeout": timeout, "check_same_thread": False}
        # Never close an SQLite connection while the milter runs: closing one
        # calls back into Python (the functions SQLAlchemy registers) through
        # PyGILState_Ensure, and on a libmilter worker thread, whose thread
        # state pymilter has already freed, that crashes the process (seen
        # under 20 sessions with the default pool's overflow connections).
        options = {
            "poolclass": QueuePool,
            "pool_size": SQLITE_POOL_SIZE,
            "max_overflow": 0,
            "pool_timeout": timeout,
        }
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        session_options = f"-c statement_timeout={int(timeout * 1000)}"
        if access is Access.READ_ONLY:
            session_options += " -c default_transaction_read_only=on"
        connect_args = {"connect_timeout": max(1, int(timeout)), "options": session_options}
        options = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
    else:
        raise ConfigError(f"database.url: unsupported database {backend!r} (sqlite or postgresql)")
    try:
        engine = create_engine(parsed, connect_args=connect_args, **options)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"database.url: {exc}") from None
    if backend == "sqlite":
        pragmas = _sqlite_reader_pragmas if access is Access.READ_ONLY else _sqlite_pragmas
        event.listen(engine, "connect", pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "commit", _release_write_lock)
        event.listen(engine, "rollback", _release_write_lock)
    _WRITE_LOCKS[engine] = (threading.Lock(), timeout)
    return engine


# One in-process write lock per engine, with its wait limit: the mail path's
# group commit (storage.writer) holds it, and on SQLite every other writer too.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, tuple[threading.Lock, float]] = (
    weakref.WeakKeyDictionary()
)


def write_lock(engine: Engine) -> tuple[threading.Lock, float]:
    """The lock this process's writers of an engine queue on, and its wait limit."""
    return _WRITE_LOCKS[engine]


def _sqlite_file(parsed: URL, url: str, access: Access) -> URL:
    """The URL to connect to, after making (CREATE) or finding the file's place."""
    database = parsed.database or ":memory:"
    if database == ":memory:":
        return parsed  # nothing to make or find; its schema is simply missing
    if access is Access.CREATE:
        parent = Path(database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission, a read-only file system
            raise ConfigError(
                f"database {safe_url(url)}: cannot create {parent}: {exc.strerror or exc}"
            ) from None
        return parsed
    if not Path(database).is_file():
        raise MissingDatabase(
            f"database {safe_url(url)} does not exist: pass --config (or set $OSFMILTER_CONFIG) "
            "to use another, or create it with 'osfmilter db upgrade'"
        )
    if access is Access.EXISTING:
        return parsed
    # mode=ro: SQLite refuses every write (and never creates the file).
    return parsed.set(
        database=f"file:{quote(database)}", query={**parsed.query, "mode": "ro", "uri": "true"}
    )


def _sqlite_pragmas(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    _sqlite_reader_pragmas(dbapi_connection, record)
    # WAL lets readers go on while one writer commits; several milter
    # processes share the file.
    dbapi_connection.execute("PRAGMA journal_mode=WAL").close()


def _sqlite_reader_pragmas(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # Everything but the journal mode, which a read-only connection cannot set.
    # pysqlite's own transaction handling cannot say BEGIN IMMEDIATE, which
    # a counter needs so that two processes cannot both read, then write:
    # turn it off and let _sqlite_begin open every transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # FULL: a commit is on disk before the client hears 250; NORMAL in WAL
    # mode can lose the last commits (accepts, their slots and volume) on
    # power loss. Group commit (storage.writer) makes concurrent sessions
    # share one fsync, and lowers it to NORMAL for a batch of rate
    # reservations alone. The cost: bench/RESULTS.md, 'SQLite with
    # `synchronous=FULL` (issue 14, item 9)'.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode == "IMMEDIATE":
        # This process's writers queue on a lock instead of on SQLite's busy
        # handler, which sleeps and retries, so a few of 16 threads waited
        # very long (bench/RESULTS.md, rate_bench.py's 'Reading the figures');
        # other processes still meet at SQLite's own lock.
        lock, timeout = _WRITE_LOCKS[connection.engine]
        if not lock.acquire(timeout=timeout):
            raise SqlTimeoutError("waited too long for the database write lock")
        connection.info["osf_write_lock"] = lock
    try:
        connection.exec_driver_sql(f"BEGIN {mode}")
    except BaseException:
        _release_write_lock(connection)
        raise


def _release_write_lock(connection: Connection) -> None:
    lock = connection.info.pop("osf_write_lock", None)
    if lock is not None:
        lock.release()


def make_url_safe(url: str) -> URL:
    """The parsed URL; an unparsable one counts as having no password."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return make_url("sqlite://")


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "<unparsable URL>"


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    location = importlib.resources.files("osfmilter.migrations")
    config.set_main_option("script_location", str(location))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision``; one that alembic cannot find or reach is a UsageError."""
    if not revision.strip():
        raise UsageError("db upgrade: the revision is empty (leave it out for head)")
    try:
        command.upgrade(_alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"schema upgrade failed: {describe(exc)}") from None
    except (CommandError, ResolutionError) as exc:
        raise UsageError(f"db upgrade {revision!r}: {describe(exc)}") from None


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, the newest revision this version knows)."""
    script = ScriptDirectory.from_config(_alembic_config(engine))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the schema revision: {describe(exc)}") from None
    return current, str(script.get_current_head())


def prepare_schema(engine: Engine, url: str) -> None:
    """The embedded SQLite database is created and upgraded on start; shared ones are not.

    Several relay nodes share a PostgreSQL database, so its schema changes only
    when an operator runs ``osfmilter db upgrade``.
    """
    current, head = schema_status(engine)
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        log.info("upgrading the SQLite schema from %s to %s", current or "empty", head)
        upgrade(engine)
        return
    raise _schema_behind(url, current, head)


def require_schema(engine: Engine, url: str) -> None:
    """For commands that must not change the database: its schema is at head already."""
    current, head = schema_status(engine)
    if current != head:
        raise _schema_behind(url, current, head)


def _schema_behind(url: str, current: str | None, head: str) -> ConfigError:
    return ConfigError(
        f"database {safe_url(url)} is at schema revision {current or 'none'}, "
        f"this version needs {head}: run 'osfmilter db upgrade'"
    )


@contextmanager
def transaction(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """One transaction on a connection of its own: committed when the block ends,
    rolled back if it raises; any database failure is a StorageError of one line.

    ``write`` holds SQLite's write lock from the start (``BEGIN IMMEDIATE``):
    what the transaction reads no other writer changes before it commits, and
    a reader that turns writer cannot fail with "database is locked" behind a
    milter's write. PostgreSQL locks what the statements lock.
    """
    try:
        with engine.connect() as plain:
            connection = plain.execution_options(sqlite_begin="IMMEDIATE") if write else plain
            with connection.begin():
                yield connection
    except SQLAlchemyError as exc:
        raise StorageError(describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """One line about a database error, SQLAlchemy's or the driver's, without the
    statement or a password."""
    original = getattr(exc, "orig", None) if isinstance(exc, SQLAlchemyError) else None
    lines = str(original if original is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def fit(value: str, column_length: int) -> str:
    """Text as a column can hold it: no NUL (PostgreSQL refuses it), no lone surrogate
    (no database driver encodes one), bounded length.

    pymilter hands undecodable header and envelope bytes over surrogate-escaped
    ("\\udce4" for a raw byte 0xE4); they are stored as the text "\\xe4".
    """
    if not value.isascii():
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that is not an escaped byte
            raw = value.encode("utf-8", "backslashreplace")
        value = raw.decode("utf-8", "backslashreplace")
    return value.replace("\x00", "\\0")[:column_length]

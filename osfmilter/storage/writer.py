"""All of a process's SQLite writes, several sessions' to one transaction (group commit).

SQLite has one writer at a time. With twenty SMTP sessions, twenty milter
threads took turns at the write lock, and each turn handed the GIL and the
lock back and forth: a message's two write transactions cost 0.7 ms of
CPU alone and 2 ms with twenty sessions (bench/session_cost.py).

Here a session queues its work and waits for the process's write lock.
Whoever gets the lock runs everything queued, each piece in a savepoint of
one transaction, commits once, and answers every session whose work it
ran; a session that gets the lock and finds its work done just returns.
Alone, a session runs its own work at once. Nothing is answered before
it is committed: if the commit fails, every session of the batch gets the
error and tempfails its message, never accepting one unrecorded.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.errors import StorageError
from osfmilter.health import BackendHealth

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[Any], Any]  # gets the driver cursor wrapper (storage.direct.Cursor)

# Enough for a burst to share a commit; a longer transaction only delays answers.
MAX_BATCH = 32


class _BatchFailed(Exception):
    """The transaction is gone: no job of the batch was committed."""

    def __init__(self, error: StorageError) -> None:
        self.error = error


class SqliteWriter:
    def __init__(
        self,
        engine: Engine,
        health: BackendHealth,
        write_lock: tuple[threading.Lock, float],
        wrap_cursor: Callable[[Any], Any],
        describe: Callable[[BaseException], str],
        health_name: str,
    ) -> None:
        self.engine = engine
        self.health = health
        self.write_lock = write_lock
        self._wrap_cursor = wrap_cursor
        self._describe = describe
        self._health_name = health_name
        self._database_errors = (engine.dialect.loaded_dbapi.Error,)
        self._queue: queue.SimpleQueue[tuple[Job, Future[Any]]] = queue.SimpleQueue()
        # Used only while holding the write lock; opened once, never closed
        # while the milter runs (see storage.db on closing SQLite connections).
        self._connection: Any = None

    def run(self, job: Callable[[Any], T]) -> T:
        """Run ``job(cursor)`` in a committed transaction; its exception if it raised."""
        future: Future[Any] = Future()
        self._queue.put((job, future))
        lock, timeout = self.write_lock
        if not lock.acquire(timeout=timeout):
            if future.cancel():
                raise StorageError("waited too long for the database write lock")
            # Another session is committing it right now.
        else:
            try:
                if not future.done():
                    self._run_queued()
            finally:
                lock.release()
        result: T = future.result()
        return result

    def _run_queued(self) -> None:
        """Under the write lock: commit what is queued, and answer each waiting session."""
        jobs: list[tuple[Job, Future[Any]]] = []
        while len(jobs) < MAX_BATCH:
            try:
                job, future = self._queue.get_nowait()
            except queue.Empty:
                break
            if future.set_running_or_notify_cancel():
                jobs.append((job, future))
        if not jobs:
            return
        try:
            if self._connection is None:
                self._connection = self.engine.raw_connection()
            answers = self._commit(self._connection, jobs)
        except _BatchFailed as failed:
            for _, future in jobs:
                future.set_exception(failed.error)
            return
        except Exception as exc:
            # The pool could not connect, or a bug: no session may wait forever.
            if not isinstance(exc, (*self._database_errors, SQLAlchemyError)):
                log.exception("database writer failed")
            error = self._failed(exc)
            for _, future in jobs:
                future.set_exception(error)
            return
        self.health.ok(self._health_name)
        for future, outcome, is_error in answers:
            if is_error:
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _commit(self, connection: Any,
                jobs: list[tuple[Job, Future[Any]]]) -> list[tuple[Future[Any], Any, bool]]:
        """Every job in one transaction; raises _BatchFailed if none of it holds.

        Each job of a batch runs in a savepoint, so one that fails takes
        back only its own writes; a job alone needs none.
        """
        try:
            connection.execute("BEGIN IMMEDIATE")
            cursor = self._wrap_cursor(connection.cursor())
            if len(jobs) == 1:
                answers = [self._alone(connection, cursor, *jobs[0])]
            else:
                answers = [self._one(connection, cursor, job, future) for job, future in jobs]
            if connection.in_transaction:
                connection.execute("COMMIT")
        except self._database_errors as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise _BatchFailed(self._failed(exc)) from exc
        return answers

    def _alone(self, connection: Any, cursor: Any, job: Job,
               future: Future[Any]) -> tuple[Future[Any], Any, bool]:
        try:
            return future, job(cursor), False
        except Exception as exc:  # noqa: BLE001 (the job's exception is its session's answer)
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return future, self._as_answer(exc), True

    def _one(self, connection: Any, cursor: Any, job: Job,
             future: Future[Any]) -> tuple[Future[Any], Any, bool]:
        connection.execute("SAVEPOINT job")
        try:
            outcome = job(cursor)
        except Exception as exc:
            if not connection.in_transaction:
                # SQLite ended the whole transaction (disk full, I/O error):
                # the jobs before this one are lost with it.
                raise
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return future, self._as_answer(exc), True
        connection.execute("RELEASE job")
        return future, outcome, False

    def _as_answer(self, exc: Exception) -> Exception:
        """A job's own exception goes back to its session; a database error as StorageError."""
        return self._failed(exc) if isinstance(exc, self._database_errors) else exc

    def _failed(self, exc: BaseException) -> StorageError:
        problem = self._describe(exc)
        self.health.failed(self._health_name, problem)
        error = StorageError(problem)
        error.__cause__ = exc
        return error

"""All of a process's writes on the mail path, several sessions' to one transaction.

With twenty SMTP sessions, twenty milter threads each ran their own short
write transactions. On SQLite (one writer at a time) they took turns at the
write lock, handing it and the GIL back and forth, so that a message's
write transactions cost far more CPU with twenty sessions than alone
(bench/RESULTS.md, 'Figures the code cited'). On PostgreSQL every one paid
its own BEGIN, COMMIT and WAL flush, and queued on the sender's locks
across the flush.

Here a session queues its work and waits for the process's write lock.
Whoever gets the lock runs everything queued in one transaction, commits
once, and answers every session whose work it ran; a session that gets the
lock and finds its work done just returns. Alone, a session runs its own
work at once. Nothing is answered before it is committed: if the commit
fails, every session of the batch gets the error and tempfails its message,
never accepting one unrecorded. If one piece of work fails, the batch is
run again with each piece in a savepoint, so that only that piece is undone
(see GroupCommit._commit).

Each piece of work comes with an :class:`Order`, and a batch runs in that
order, so that two relay nodes' batches take PostgreSQL's locks in the same
order (see Order for why they cannot deadlock each other).
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.errors import StorageError
from osfmilter.health import BackendHealth
from osfmilter.storage.db import write_lock

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[Any], Any]  # gets the driver cursor wrapper (storage.direct.Cursor)


class Rank(IntEnum):
    """The kinds of lock a job takes first, in the order a batch takes them."""

    SENDER_LOCK = 0
    VOLUME_ROW = 1
    UNLOCKED = 2


class Order(NamedTuple):
    """Where a piece of work goes in a batch: by the first lock it takes.

    A batch sorts its work by (rank, key) and runs it in one transaction,
    which holds every lock until the commit. Three ranks, in the order a
    batch takes them; the first two are the locks another batch can wait for:

    - :meth:`sender_lock`: a sender's advisory lock, by lock id (storage.rate's
      reservations and releases). Under it a job touches only the rows of
      that sender's rate keys, which every other writer reaches only under
      the same lock, or without waiting (retention skips locked rows);
    - :meth:`volume_row`: a monthly_volume row, by (month, direction,
      customer id, domain) (storage.store's accept and inbound volume);
    - :data:`UNLOCKED`, last: work whose locks no other batch waits for (a
      new event row; a rate commit's update of its own reservation's slots,
      which the prune under the sender's lock reaches only once expired,
      and the session renews a reservation that could expire before its
      accept commits: limits.rate).

    Why two batches cannot deadlock: each takes its contended locks in
    ascending order, so a batch waiting for a lock holds only locks below
    it, and a cycle of batches each waiting for the next would need one to
    wait for a lock below one it holds. The one exception: storage.store's
    record_inbound (a message to several scanned domains) locks several
    inbound volume rows, in sorted order, under the order of its first; in
    a batch where another inbound job sorts between them, the rows are
    taken out of order, and a batch that takes them in order can deadlock
    with it. PostgreSQL's deadlock detector then ends one of the two
    waiting inbound jobs (SQLSTATE 40P01); its batch runs again the careful
    way (GroupCommit._commit), where at worst that job fails: an inbound
    count is lost, and logged (session._record_inbound).

    SQLite has one writer at a time (BEGIN IMMEDIATE): there the order only
    decides which job runs first.
    """

    rank: Rank
    key: tuple[Any, ...] = ()

    @classmethod
    def sender_lock(cls, lock_id: int) -> Order:
        """Work that first takes a sender's advisory lock (storage.rate.advisory_lock_id)."""
        return cls(Rank.SENDER_LOCK, (lock_id,))

    @classmethod
    def volume_row(cls, month: str, direction: str, customer_id: int, domain: str) -> Order:
        """Work that first locks one monthly_volume row."""
        return cls(Rank.VOLUME_ROW, (month, direction, customer_id, domain))


# Work that takes no lock another batch waits for; it runs last. The default.
UNLOCKED = Order(Rank.UNLOCKED)


# Enough for a burst to share a commit; a longer transaction only delays answers.
MAX_BATCH = 32


class Later(Generic[T]):
    """A job's answer, to be read once the batch's statements are sent (and answered).

    A job that returns one sends its statements and reads nothing, so on
    PostgreSQL a whole batch costs one wait instead of one per job that
    reads. ``read`` runs in the same transaction, before the commit; what
    it raises is the job's answer, as if the job had raised it.
    """

    def __init__(self, read: Callable[[], T]) -> None:
        self.read = read


# PostgreSQL's query_canceled (statement_timeout) and lock_not_available: the
# batch waited its [database] timeout, which no careful rerun would shorten.
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def _timed_out(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _TIMEOUT_SQLSTATES


def _finish(outcome: Any) -> Any:
    return outcome.read() if isinstance(outcome, Later) else outcome


@dataclass(order=True)
class _Work:
    order: Order
    job: Job = field(compare=False)
    future: Future[Any] = field(compare=False)
    # Must survive a power loss once committed (an accept); see _synchronous.
    durable: bool = field(compare=False, default=True)


class _Unattributed(Exception):
    """The quick way met a job's exception or a database error; nothing was committed."""


class _TransactionEnded(Exception):
    """A job swallowed the error that ended the transaction (SQLite rolls back by
    itself on a full disk): the answers so far were never written, and nothing
    after it may run outside a transaction."""


class _BatchFailed(Exception):
    """The transaction is gone: no job of the batch was committed."""

    def __init__(self, error: StorageError, retry: bool) -> None:
        self.error = error
        # The connection was lost before the commit was sent: nothing of the
        # batch happened, and the jobs can run again on a new connection.
        self.retry = retry


_CREATING = threading.Lock()


def group_commit(
    engine: Engine,
    health: BackendHealth,
    wrap_cursor: Callable[[Any], Any],
    describe: Callable[[BaseException], str],
    health_name: str,
) -> GroupCommit:
    """The engine's one group commit: the store's and the rate limiter's writes share it.

    It lives on the engine object, so it goes when the engine goes (a table
    keyed by engine would keep every engine alive: the group commit's
    connection leads back to its engine through the pool's listeners). Its
    health record is the first caller's: the milter builds its store (with
    the record the metrics read) before its rate limiter.
    """
    with _CREATING:
        found: GroupCommit | None = getattr(engine, "_osfmilter_group_commit", None)
        if found is None:
            found = GroupCommit(engine, health, wrap_cursor, describe, health_name)
            engine._osfmilter_group_commit = found  # type: ignore[attr-defined]
        return found


class GroupCommit:
    def __init__(
        self,
        engine: Engine,
        health: BackendHealth,
        wrap_cursor: Callable[[Any], Any],
        describe: Callable[[BaseException], str],
        health_name: str,
    ) -> None:
        self._engine = weakref.ref(engine)  # the engine holds this object
        self.health = health
        self.write_lock = write_lock(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._wrap_cursor = wrap_cursor
        self._describe = describe
        self._health_name = health_name
        self._database_errors = (engine.dialect.loaded_dbapi.Error,)
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        # Used only while holding the write lock. SQLite's is never closed
        # while the milter runs (see storage.db); a broken PostgreSQL one is
        # replaced.
        self._connection: Any = None
        self._pipeline: Any = None  # psycopg's, while a PostgreSQL batch runs
        self._synchronous = "FULL"  # SQLite's setting on self._connection
        # A connection checked out of the pool keeps the engine alive: give
        # it back when the engine is disposed of (tests, the CLI).
        event.listen(engine, "engine_disposed", self._give_back)

    def _give_back(self, engine: Engine) -> None:
        lock, timeout = self.write_lock
        if lock.acquire(timeout=timeout):
            try:
                if self._connection is not None:
                    # Closed, not returned: the pool it came from is gone. (No
                    # libmilter thread disposes of an engine: see storage.db.)
                    self._connection.invalidate()
                    self._connection = None
            finally:
                lock.release()

    def run(self, job: Job, order: Order = UNLOCKED, durable: bool = True) -> Any:
        """Run ``job(cursor)`` in a committed transaction; its exception if it raised.

        A :class:`Later` the job answers is read before the commit (the
        typed ways in are storage.direct's transact and transact_later).
        ``durable=False`` is for work whose loss in a power cut loses no
        answered mail (a rate reservation): on SQLite a batch of only such
        work commits without waiting for the disk.
        """
        future: Future[Any] = Future()
        self._queue.put(_Work(order, job, future, durable))
        lock, timeout = self.write_lock
        if not lock.acquire(timeout=timeout):
            if future.cancel():
                raise StorageError("waited too long for the database write lock")
            # Another session is committing it right now.
        else:
            try:
                while not future.done():  # ours was queued before we got the lock
                    self._run_queued()
            finally:
                lock.release()
        return future.result()

    def _run_queued(self) -> None:
        """Under the write lock: commit what is queued, and answer each waiting session."""
        batch: list[_Work] = []
        while len(batch) < MAX_BATCH:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work.future.set_running_or_notify_cancel():
                batch.append(work)
        if not batch:
            return
        try:
            batch.sort()  # in the try: whatever happens, every queued session is answered
            try:
                answers = self._commit(batch, careful=False)
            except _Unattributed:
                answers = self._commit(batch, careful=True)
            except _BatchFailed as failed:
                if not failed.retry:
                    raise
                answers = self._commit(batch, careful=True)  # a pooled connection had gone stale
        except _BatchFailed as failed:
            for work in batch:
                work.future.set_exception(failed.error)
            return
        except Exception as exc:
            # The pool could not connect, or a bug: no session may wait forever.
            if not isinstance(exc, (*self._database_errors, SQLAlchemyError)):
                log.exception("database writer failed")
            error = self._failed(exc)
            for work in batch:
                work.future.set_exception(error)
            return
        self.health.ok(self._health_name)
        for future, outcome, is_error in answers:
            if is_error:
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _commit(self, batch: list[_Work], careful: bool) -> list[tuple[Future[Any], Any, bool]]:
        """Every job in one transaction; raises _BatchFailed if none of it holds.

        The quick way (``careful=False``, tried first) runs the jobs one
        after the other with no savepoints, and on PostgreSQL without
        waiting after each: a job waits only for what it reads, the batch
        for one sync before the commit, and Later answers are read after
        it. If a job raises (its own refusal, or a database error, which in
        a pipeline may even be an earlier job's), nothing is committed and
        _Unattributed sends the batch the careful way: each job in a
        savepoint with a sync after it, so that every error lands on its
        own job and takes back only that job's writes (a job alone on
        SQLite needs no savepoint). A batch that timed out is not run
        again: its sessions have waited as long as they may.
        """
        if self._connection is None:
            engine = self._engine()
            if engine is None:
                raise _BatchFailed(StorageError("the database engine was disposed of"), retry=False)
            self._connection = engine.raw_connection()
            self._synchronous = "FULL"  # as storage.db sets every SQLite connection
        connection = self._connection
        running_jobs = committing = False
        cursor = None
        try:
            with self._pipelined(connection):
                self._sync_mode(connection, batch)
                self._begin(connection)
                running_jobs = True
                cursor = self._wrap_cursor(connection.cursor())
                if len(batch) == 1 and self._sqlite and careful:
                    answers = [self._alone(connection, cursor, batch[0])]
                elif careful:
                    answers = [self._one(connection, cursor, work) for work in batch]
                elif self._sqlite:  # no savepoints: if any job raises, see below
                    # Each answer at once (no round trip to save): statements
                    # left unread to the end of the batch made it slower
                    # (bench/RESULTS.md, 'What made it faster').
                    answers = []
                    for work in batch:
                        answers.append((work.future, _finish(work.job(cursor)), False))
                        if not connection.in_transaction:
                            # Ended under the job: what follows would autocommit.
                            raise _TransactionEnded
                else:
                    outcomes = [(work.future, work.job(cursor)) for work in batch]
                    self._sync()
                    answers = [(future, _finish(outcome), False) for future, outcome in outcomes]
                if self._usable(connection):
                    running_jobs, committing = False, True
                    self._end(connection, "COMMIT")
                elif any(not errored for _, _, errored in answers):
                    raise _TransactionEnded
        except Exception as exc:
            if cursor is not None:
                with suppress(Exception):
                    cursor.close()
            broken = self._broken(connection)
            if broken:
                connection.invalidate()
                self._connection = None
            elif self._usable(connection):
                self._end(connection, "ROLLBACK")
            if isinstance(exc, _TransactionEnded):
                ended = StorageError("the transaction ended before its commit")
                raise _BatchFailed(ended, retry=False) from None
            if running_jobs and not (careful or broken or _timed_out(exc)):
                raise _Unattributed from exc
            if not isinstance(exc, self._database_errors):
                raise  # not the database's: a bug, answered in _run_queued
            raise _BatchFailed(self._failed(exc), retry=broken and not committing) from exc
        cursor.close()
        return answers

    def _alone(self, connection: Any, cursor: Any, work: _Work) -> tuple[Future[Any], Any, bool]:
        try:
            return work.future, _finish(work.job(cursor)), False
        except Exception as exc:  # noqa: BLE001 - the job's exception is its session's answer
            self._end(connection, "ROLLBACK")
            return work.future, self._as_answer(exc), True

    def _one(self, connection: Any, cursor: Any, work: _Work) -> tuple[Future[Any], Any, bool]:
        cursor.raw.execute("SAVEPOINT job")
        try:
            outcome = work.job(cursor)
            if isinstance(outcome, Later):
                self._sync()
                outcome = outcome.read()
            cursor.raw.execute("RELEASE SAVEPOINT job")
            self._sync()  # a pipelined statement's error belongs to this job
        except Exception as exc:
            if not self._usable(connection):
                # The whole transaction ended (disk full, I/O error, lost
                # server): the jobs before this one are lost with it.
                raise
            self._sync(after_error=True)
            cursor.raw.execute("ROLLBACK TO SAVEPOINT job")
            cursor.raw.execute("RELEASE SAVEPOINT job")
            self._sync()
            return work.future, self._as_answer(exc), True
        return work.future, outcome, False

    @contextmanager
    def _pipelined(self, connection: Any) -> Iterator[None]:
        """PostgreSQL: send statements without waiting for each one's answer.

        A statement whose result a job reads still waits; the others (the
        savepoints, the lock, inserts) go out together, and the batch waits
        once per job (the sync after it) instead of once per statement.
        """
        if self._sqlite:
            yield
            return
        with connection.dbapi_connection.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    def _sync(self, after_error: bool = False) -> None:
        if self._pipeline is None:
            return
        if not after_error:
            self._pipeline.sync()
            return
        # Leaves the pipeline's aborted state; the error itself was raised already.
        with suppress(*self._database_errors):
            self._pipeline.sync()

    # The two drivers' transactions ------------------------------------------

    def _sync_mode(self, connection: Any, batch: list[_Work]) -> None:
        """SQLite: FULL (the commit waits for the disk) when the batch holds durable work.

        Every message commits twice, its reservation at MAIL and its accept
        at the end; only the accept must survive a power loss (the client
        has been told 250). A FULL commit syncs the whole WAL, so the
        NORMAL commits before it become durable with it.
        """
        if not self._sqlite:
            return  # PostgreSQL: synchronous_commit stays on for every batch
        wanted = "FULL" if any(work.durable for work in batch) else "NORMAL"
        if wanted != self._synchronous:
            connection.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted

    def _begin(self, connection: Any) -> None:
        if self._sqlite:
            # Takes SQLite's write lock now, so what a job reads stays true
            # until the commit. psycopg begins by itself with the first statement.
            connection.execute("BEGIN IMMEDIATE")

    def _end(self, connection: Any, how: str) -> None:
        if self._sqlite:
            if connection.in_transaction:  # SQLite ends it by itself on some errors
                connection.execute(how)
        elif how == "COMMIT":
            connection.commit()
        else:
            connection.rollback()

    def _usable(self, connection: Any) -> bool:
        """The transaction is still there to commit, or to roll back to a savepoint."""
        if self._sqlite:
            return bool(connection.in_transaction)
        return not self._broken(connection)

    def _broken(self, connection: Any) -> bool:
        if self._sqlite:
            return False
        dbapi = connection.dbapi_connection
        return bool(dbapi is None or dbapi.broken or dbapi.closed)

    def _as_answer(self, exc: Exception) -> Exception:
        """A job's own exception goes back to its session; a database error as StorageError."""
        return self._failed(exc) if isinstance(exc, self._database_errors) else exc

    def _failed(self, exc: BaseException) -> StorageError:
        problem = self._describe(exc)
        self.health.failed(self._health_name, problem)
        error = StorageError(problem)
        error.__cause__ = exc
        return error

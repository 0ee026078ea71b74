"""Where an identity's reputation lives, and the one way it changes.

Each call loads the identity's standing, applies one event with the pure
:func:`~osfmilter.reputation.transitions.apply` and stores the outcome in a
single transaction that holds the identity's lock (PostgreSQL: its
``smtp_servers``/``sasl_accounts`` row ``FOR NO KEY UPDATE``; SQLite:
``BEGIN IMMEDIATE``). Two relay nodes deciding at once are serialised, so no
transition is lost or made twice. The clock is read under the lock, so
history follows the order in which the changes were made.

The state lives in the identity row's ``state``, ``state_changed_at`` and
``last_incident_at``; what the rules still count in ``reputation_evidence``;
every transition in ``state_history``, one row each, written in the same
transaction as the state it explains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from osfmilter.clock import Clock
from osfmilter.errors import UnknownIdentity, UsageError
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation.transitions import (
    SYSTEM,
    Event,
    Incident,
    IncidentKind,
    LimitRefusal,
    OperatorAction,
    OperatorActionKind,
    Outcome,
    Rules,
    Standing,
    Tick,
    Transition,
    apply,
)
from osfmilter.storage.db import fit, transaction
from osfmilter.storage.schema import ReputationEvidence, SaslAccount, SmtpServer, StateChange

DETECTION = "detection"
REFUSAL = "refusal"
MAX_ACTOR = 100
MAX_REASON = 400


# More to write in a state change's transaction, given its transitions.
Also = Callable[[Connection, list[Transition]], None]


@dataclass(frozen=True)
class _Target:
    """One identity's row and the column that points at it from other tables."""

    kind: IdentityKind
    id: int

    @property
    def table(self) -> type[SmtpServer] | type[SaslAccount]:
        return SmtpServer if self.kind is IdentityKind.SERVER else SaslAccount

    @property
    def fk(self) -> str:
        return "smtp_server_id" if self.kind is IdentityKind.SERVER else "sasl_account_id"

    def owns(self, model: type[ReputationEvidence] | type[StateChange]) -> Any:
        return getattr(model, self.fk) == self.id

    def unknown(self) -> UnknownIdentity:
        what = "SMTP server" if self.kind is IdentityKind.SERVER else "SASL account"
        return UnknownIdentity(f"no {what} with id {self.id}")


@dataclass(frozen=True)
class _Evidence:
    id: int
    kind: str
    at: datetime


class ReputationStore:
    """The reputation of sender identities in the shared database."""

    def __init__(self, engine: Engine, clock: Clock, rules: Rules) -> None:
        self.engine = engine
        self.clock = clock
        self.rules = rules

    # The mail path ---------------------------------------------------------

    def observe(self, kind: IdentityKind, identity_id: int) -> ServerState:
        """The state now, recording a recovery that has fallen due (dated when it did)."""
        target = _Target(kind, identity_id)
        # The cheap path: a read, and a write only if a recovery is due.
        with transaction(self.engine) as connection:
            standing = self._row(connection, target)
        tick = apply(standing, Tick(self.clock.now()), self.rules)
        if not tick.transitions:
            return standing.state
        return self._apply(target, Tick).standing.state

    def record_incident(
        self, kind: IdentityKind, identity_id: int, incident_kind: IncidentKind, detail: str = ""
    ) -> ServerState:
        """A spam or virus detection (or a usage incident) of the identity's mail."""
        outcome = self._apply(
            _Target(kind, identity_id), lambda at: Incident(incident_kind, at, detail)
        )
        return outcome.standing.state

    def record_limit_refusal(self, kind: IdentityKind, identity_id: int) -> ServerState:
        """A rate or volume limit refused one of the identity's messages (the usage rule)."""
        return self._apply(_Target(kind, identity_id), LimitRefusal).standing.state

    # Operators -------------------------------------------------------------

    def operator(
        self,
        kind: IdentityKind,
        identity_id: int,
        action: OperatorActionKind,
        actor: str,
        reason: str,
        then: Also | None = None,
    ) -> list[Transition]:
        """Release or block; the transitions made (none: it already was in that state).

        A recovery that had fallen due is recorded first, so releasing a
        verdacht identity whose 48 hours are over reports that recovery only.
        ``then`` writes more in the same transaction, given the transitions
        (the API's audit entry), so the change and it commit together.
        """
        actor = _one_line("--by", actor, MAX_ACTOR)
        reason = _one_line("--reason", reason, MAX_REASON)
        if actor.casefold() == SYSTEM:
            raise UsageError(f"--by {actor!r} is reserved for automatic transitions")
        outcome = self._apply(
            _Target(kind, identity_id), lambda at: OperatorAction(action, actor, reason, at), then
        )
        return list(outcome.transitions)

    def history(self, kind: IdentityKind, identity_id: int) -> list[Transition]:
        """Every transition of the identity, oldest first."""
        target = _Target(kind, identity_id)
        with transaction(self.engine) as connection:
            self._row(connection, target)
            rows = connection.execute(
                select(
                    StateChange.at,
                    StateChange.old_state,
                    StateChange.new_state,
                    StateChange.reason,
                    StateChange.actor,
                )
                .where(target.owns(StateChange))
                .order_by(StateChange.at, StateChange.id)
            ).all()
        return [
            Transition(r.at, ServerState(r.old_state), ServerState(r.new_state), r.reason, r.actor)
            for r in rows
        ]

    def standing(self, kind: IdentityKind, identity_id: int) -> Standing:
        """The stored standing, as it is (no recovery applied)."""
        target = _Target(kind, identity_id)
        with transaction(self.engine) as connection:
            return _with_evidence(self._row(connection, target), self._evidence(connection, target))

    # Inside ----------------------------------------------------------------

    def _apply(
        self, target: _Target, event: Callable[[datetime], Event], then: Also | None = None
    ) -> Outcome:
        with transaction(self.engine, write=True) as connection:
            row = self._row(connection, target, lock=True)
            evidence = self._evidence(connection, target)
            before = _with_evidence(row, evidence)
            outcome = apply(before, event(self.clock.now()), self.rules)
            self._save(connection, target, before, outcome, evidence)
            if then is not None:
                then(connection, list(outcome.transitions))
        return outcome

    @staticmethod
    def _row(connection: Connection, target: _Target, lock: bool = False) -> Standing:
        """The identity row's part of the standing; UnknownIdentity if there is no row."""
        table = target.table
        query = select(table.state, table.state_changed_at, table.last_incident_at).where(
            table.id == target.id
        )
        if lock:
            # FOR NO KEY UPDATE: new events may still reference the identity
            # (FOR KEY SHARE) while it is held.
            query = query.with_for_update(key_share=True)
        row = connection.execute(query).one_or_none()
        if row is None:
            raise target.unknown()
        return Standing(ServerState(row.state), row.state_changed_at, row.last_incident_at)

    @staticmethod
    def _evidence(connection: Connection, target: _Target) -> list[_Evidence]:
        # Bounded: _save keeps no more rows than the rules count.
        rows = connection.execute(
            select(ReputationEvidence.id, ReputationEvidence.kind, ReputationEvidence.at)
            .where(target.owns(ReputationEvidence))
            .order_by(ReputationEvidence.at, ReputationEvidence.id)
        )
        return [_Evidence(r.id, r.kind, r.at) for r in rows]

    @staticmethod
    def _save(
        connection: Connection,
        target: _Target,
        before: Standing,
        outcome: Outcome,
        evidence: list[_Evidence],
    ) -> None:
        after = outcome.standing
        values: dict[str, object] = {}
        if outcome.transitions:
            # The state never changes without its history rows, in this transaction.
            connection.execute(
                insert(StateChange),
                [
                    {
                        "at": change.at,
                        target.fk: target.id,
                        "old_state": change.old,
                        "new_state": change.new,
                        "reason": fit(change.reason, 500),
                        "actor": fit(change.actor, 100),
                    }
                    for change in outcome.transitions
                ],
            )
            values.update(state=after.state, state_changed_at=after.changed_at)
        else:
            assert (after.state, after.changed_at) == (before.state, before.changed_at)
        if after.last_incident_at != before.last_incident_at:
            values["last_incident_at"] = after.last_incident_at
        if values:
            connection.execute(
                update(target.table).where(target.table.id == target.id).values(**values)
            )
        for kind, times in ((DETECTION, after.detections), (REFUSAL, after.refusals)):
            rows = [e for e in evidence if e.kind == kind]
            kept = _kept_from(rows, times)
            if gone := [e.id for e in rows[: len(rows) - kept]]:
                connection.execute(
                    delete(ReputationEvidence).where(ReputationEvidence.id.in_(gone))
                )
            if added := times[kept:]:
                connection.execute(
                    insert(ReputationEvidence),
                    [{"at": at, target.fk: target.id, "kind": kind} for at in added],
                )


def _with_evidence(standing: Standing, evidence: Sequence[_Evidence]) -> Standing:
    return Standing(
        standing.state,
        standing.changed_at,
        standing.last_incident_at,
        detections=tuple(e.at for e in evidence if e.kind == DETECTION),
        refusals=tuple(e.at for e in evidence if e.kind == REFUSAL),
    )


def _kept_from(rows: Sequence[_Evidence], times: Sequence[datetime]) -> int:
    """How many of the newest rows times still holds at its start (the rules only
    drop the oldest and append the newest)."""
    for kept in range(min(len(rows), len(times)), 0, -1):
        if [e.at for e in rows[len(rows) - kept :]] == list(times[:kept]):
            return kept
    return 0


def _one_line(option: str, text: str, limit: int) -> str:
    value = " ".join(text.split()) if text.isprintable() else ""
    if not value or len(value) > limit:
        raise UsageError(f"{option} must be one line of 1 to {limit} printable characters")
    return value

"""The server state machine of docs/states.rst, 'Transitions', as one pure function.

``apply(standing, event, rules)`` takes what is known about a sender identity,
one thing that happened to it, and the configured rules, and returns the new
standing with the transitions that happened on the way. It does no I/O and
reads no clock: every event carries its own time, so a recovery that fell due
while nobody was looking is dated at the moment it fell due.

- An incident (spam, virus, usage) makes ``veilig`` ``verdacht`` and restarts
  the recovery period; spam and virus detections also count towards the
  automatic block.
- More than ``usage_refusals`` limit refusals within an hour are one usage
  incident; the count then starts again.
- ``verdacht`` becomes ``veilig`` once ``recovery`` has passed since the last
  incident.
- ``onveilig`` ignores everything but an operator: incidents, refusals and
  clock ticks leave it, and what is counted for it, unchanged.
- An operator's ``block`` makes any other state ``onveilig``; ``release``
  makes ``verdacht`` or ``onveilig`` ``veilig`` and forgets the counted
  detections and refusals, so a released server starts with a clean slate.
  Blocking ``onveilig`` or releasing ``veilig`` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from osfmilter.model import ServerState

if TYPE_CHECKING:
    from osfmilter.config import ReputationSection

SYSTEM = "system"


class IncidentKind(StrEnum):
    SPAM = "spam"
    VIRUS = "virus"
    USAGE = "usage"  # more than the allowed number of limit refusals within an hour


DETECTIONS = frozenset({IncidentKind.SPAM, IncidentKind.VIRUS})


class OperatorActionKind(StrEnum):
    RELEASE = "release"
    BLOCK = "block"


@dataclass(frozen=True)
class Incident:
    kind: IncidentKind
    at: datetime
    detail: str = ""  # the virus name, the spam score: goes into the history's reason


@dataclass(frozen=True)
class LimitRefusal:
    """A rate or volume limit refused one of the identity's messages."""

    at: datetime


@dataclass(frozen=True)
class Tick:
    """Someone looks at the identity at this time (the clock moved on)."""

    at: datetime


@dataclass(frozen=True)
class OperatorAction:
    kind: OperatorActionKind
    actor: str
    reason: str
    at: datetime


Event = Incident | LimitRefusal | Tick | OperatorAction


# The usage rule counts limit refusals within an hour; the count is configured,
# the hour is not.
USAGE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Rules:
    """The rules' numbers. No defaults here: they are the config model's
    (config.ReputationSection), made into Rules by :meth:`from_config`."""

    recovery: timedelta
    # More than this many limit refusals within usage_window make a usage incident.
    usage_refusals: int
    usage_window: timedelta
    auto_block: bool
    # This many spam/virus detections within auto_block_window make the identity onveilig.
    auto_block_detections: int
    auto_block_window: timedelta

    @classmethod
    def from_config(cls, section: ReputationSection) -> Rules:
        return cls(
            recovery=timedelta(hours=section.recovery_hours),
            usage_refusals=section.usage_refusals,
            usage_window=USAGE_WINDOW,
            auto_block=section.auto_block,
            auto_block_detections=section.auto_block_detections,
            auto_block_window=timedelta(hours=section.auto_block_window_hours),
        )


@dataclass(frozen=True)
class Standing:
    """What the rules need to know about one identity.

    ``detections`` holds the times of the newest spam/virus detections still
    inside the auto-block window (at most ``auto_block_detections`` of them:
    older ones cannot change the verdict), ``refusals`` those of the limit
    refusals inside the usage window not yet counted as an incident. Both are
    oldest first.
    """

    state: ServerState
    changed_at: datetime
    last_incident_at: datetime | None = None
    detections: tuple[datetime, ...] = ()
    refusals: tuple[datetime, ...] = ()

    def recovery_due(self, rules: Rules) -> datetime | None:
        """When a ``verdacht`` identity becomes ``veilig`` if nothing else happens."""
        if self.state is not ServerState.VERDACHT:
            return None
        # A verdacht row without a recorded incident (set by hand, or older
        # than the reputation columns) recovers from the time it changed.
        since = self.last_incident_at or self.changed_at
        return max(since + rules.recovery, self.changed_at)


@dataclass(frozen=True)
class Transition:
    at: datetime
    old: ServerState
    new: ServerState
    reason: str
    actor: str


@dataclass(frozen=True)
class Outcome:
    standing: Standing
    transitions: tuple[Transition, ...] = ()


def apply(standing: Standing, event: Event, rules: Rules) -> Outcome:
    """The identity's standing after event, and the transitions that happened, in order."""
    # Relay nodes' clocks differ a little: an event dated before the last
    # change counts as happening at that change, so history never runs backwards.
    at = max(event.at, standing.changed_at)
    standing, transitions = _catch_up(standing, at, rules)

    if isinstance(event, OperatorAction):
        standing, change = _operator(standing, event, at)
        return Outcome(standing, (*transitions, *change))
    if standing.state is ServerState.ONVEILIG:
        return Outcome(standing, transitions)

    standing = replace(
        standing,
        detections=tuple(d for d in standing.detections if d > at - rules.auto_block_window),
        refusals=tuple(r for r in standing.refusals if r > at - rules.usage_window),
    )
    if isinstance(event, LimitRefusal):
        refusals = (*standing.refusals, at)
        if len(refusals) <= rules.usage_refusals:
            return Outcome(replace(standing, refusals=refusals), transitions)
        standing = replace(standing, refusals=())
        event = Incident(
            IncidentKind.USAGE,
            at,
            f"{len(refusals)} limit refusals within {_hours(rules.usage_window)}",
        )
    if isinstance(event, Incident):
        standing, change = _incident(standing, event, at, rules)
        transitions += change
    return Outcome(standing, transitions)


def _catch_up(
    standing: Standing, at: datetime, rules: Rules
) -> tuple[Standing, tuple[Transition, ...]]:
    """The recovery that fell due at or before at, dated when it fell due."""
    due = standing.recovery_due(rules)
    if due is None or due > at:
        return standing, ()
    since = standing.last_incident_at or standing.changed_at
    reason = f"no incident for {_hours(rules.recovery)} since {_iso(since)}"
    change = Transition(due, ServerState.VERDACHT, ServerState.VEILIG, reason, SYSTEM)
    return replace(standing, state=ServerState.VEILIG, changed_at=due), (change,)


def _incident(
    standing: Standing, incident: Incident, at: datetime, rules: Rules
) -> tuple[Standing, tuple[Transition, ...]]:
    detections = standing.detections
    if incident.kind in DETECTIONS:
        detections = (*detections, at)[-rules.auto_block_detections :]
    standing = replace(
        standing, detections=detections, last_incident_at=max(at, standing.last_incident_at or at)
    )
    what = describe(incident)
    if (
        rules.auto_block
        and incident.kind in DETECTIONS
        and len(detections) >= rules.auto_block_detections
    ):
        reason = (
            f"{len(detections)} spam/virus detections within "
            f"{_hours(rules.auto_block_window)}, the last: {what}"
        )
        return _move(standing, ServerState.ONVEILIG, at, reason, SYSTEM)
    if standing.state is ServerState.VEILIG:
        return _move(standing, ServerState.VERDACHT, at, what, SYSTEM)
    return standing, ()  # verdacht already: the recovery period starts again


def _operator(
    standing: Standing, action: OperatorAction, at: datetime
) -> tuple[Standing, tuple[Transition, ...]]:
    target = ServerState.ONVEILIG if action.kind is OperatorActionKind.BLOCK else ServerState.VEILIG
    if standing.state is target:
        return standing, ()
    standing = replace(standing, detections=(), refusals=())
    return _move(standing, target, at, action.reason, action.actor)


def _move(
    standing: Standing, new: ServerState, at: datetime, reason: str, actor: str
) -> tuple[Standing, tuple[Transition, ...]]:
    change = Transition(at, standing.state, new, reason, actor)
    return replace(standing, state=new, changed_at=at), (change,)


def describe(incident: Incident) -> str:
    """The incident as a history reason, e.g. ``virus detected: Eicar-Signature``."""
    what = {
        IncidentKind.SPAM: "spam detected",
        IncidentKind.VIRUS: "virus detected",
        IncidentKind.USAGE: "usage rule broken",
    }[incident.kind]
    detail = " ".join(incident.detail.split())
    return f"{what}: {detail}" if detail else what


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")

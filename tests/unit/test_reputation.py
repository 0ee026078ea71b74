"""The reputation state machine of docs/states.rst, 'Transitions': every arrow, and invariants."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from osfmilter.config import Config, ReputationSection, config_from_dict
from osfmilter.errors import ConfigError
from osfmilter.model import ServerState
from osfmilter.reputation import (
    SYSTEM,
    Event,
    Incident,
    IncidentKind,
    LimitRefusal,
    OperatorAction,
    OperatorActionKind,
    Rules,
    Standing,
    Tick,
    Transition,
    apply,
)

VEILIG, VERDACHT, ONVEILIG = ServerState.VEILIG, ServerState.VERDACHT, ServerState.ONVEILIG
SPAM, VIRUS, USAGE = IncidentKind.SPAM, IncidentKind.VIRUS, IncidentKind.USAGE
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def spam(hours: float) -> Incident:
    return Incident(SPAM, h(hours), "score 14.2")


def virus(hours: float) -> Incident:
    return Incident(VIRUS, h(hours), "Eicar-Signature")


def refusals(count: int, start: float, step_minutes: float = 1.0) -> list[Event]:
    return [LimitRefusal(h(start + i * step_minutes / 60)) for i in range(count)]


def release(hours: float, actor: str = "alice") -> OperatorAction:
    return OperatorAction(OperatorActionKind.RELEASE, actor, "customer fixed the form", h(hours))


def block(hours: float, actor: str = "alice") -> OperatorAction:
    return OperatorAction(OperatorActionKind.BLOCK, actor, "open relay", h(hours))


DEFAULT_RULES = Rules.from_config(Config().reputation)


def run(
    standing: Standing, events: list[Event], rules: Rules = DEFAULT_RULES
) -> tuple[Standing, list[Transition]]:
    changes: list[Transition] = []
    for event in events:
        outcome = apply(standing, event, rules)
        standing = outcome.standing
        changes.extend(outcome.transitions)
    return standing, changes


def fresh(state: ServerState = VEILIG) -> Standing:
    return Standing(state, T0)


def verdacht_since(hours: float = 0) -> Standing:
    return Standing(VERDACHT, h(hours), last_incident_at=h(hours))


# Every arrow of docs/states.rst, 'Transitions' -------------------------------

Expected = list[tuple[datetime, ServerState, ServerState, str]]  # (at, old, new, actor)

# (name, start, events, the transitions expected, the final state[, rules])
ARROWS: list[tuple[Any, ...]] = [
    ("veilig → verdacht: spam", fresh(), [spam(1)], [(h(1), VEILIG, VERDACHT, SYSTEM)], VERDACHT),
    ("veilig → verdacht: virus", fresh(), [virus(1)], [(h(1), VEILIG, VERDACHT, SYSTEM)], VERDACHT),
    (
        "veilig → verdacht: a usage incident",
        fresh(),
        [Incident(USAGE, h(1))],
        [(h(1), VEILIG, VERDACHT, SYSTEM)],
        VERDACHT,
    ),
    (
        "veilig → verdacht: 21 limit refusals within an hour",
        fresh(),
        refusals(21, 1, 2),
        [(h(1 + 40 / 60), VEILIG, VERDACHT, SYSTEM)],
        VERDACHT,
    ),
    ("20 limit refusals within an hour are allowed", fresh(), refusals(20, 1, 2), [], VEILIG),
    (
        "21 limit refusals over more than an hour are allowed",
        fresh(),
        refusals(21, 1, 3.01),
        [],
        VEILIG,
    ),
    (
        "verdacht → veilig: 48 h after the last incident, dated then",
        verdacht_since(1),
        [Tick(h(100))],
        [(h(49), VERDACHT, VEILIG, SYSTEM)],
        VEILIG,
    ),
    (
        "verdacht → veilig: exactly at the due time",
        verdacht_since(1),
        [Tick(h(49))],
        [(h(49), VERDACHT, VEILIG, SYSTEM)],
        VEILIG,
    ),
    (
        "verdacht stays a second before it is due",
        verdacht_since(1),
        [Tick(h(49) - timedelta(seconds=1))],
        [],
        VERDACHT,
    ),
    ("an incident restarts the 48 hours", verdacht_since(0), [spam(40), Tick(h(87))], [], VERDACHT),
    (
        "... which end 48 h after that incident",
        verdacht_since(0),
        [spam(40), Tick(h(89))],
        [(h(88), VERDACHT, VEILIG, SYSTEM)],
        VEILIG,
    ),
    (
        "a usage incident restarts them as well",
        verdacht_since(0),
        [*refusals(21, 40), Tick(h(60 + 40))],
        [(h(40 + 20 / 60 + 48), VERDACHT, VEILIG, SYSTEM)],
        VEILIG,
    ),
    (
        "an incident after an unobserved recovery: first the recovery, then verdacht",
        verdacht_since(0),
        [virus(60)],
        [(h(48), VERDACHT, VEILIG, SYSTEM), (h(60), VEILIG, VERDACHT, SYSTEM)],
        VERDACHT,
    ),
    (
        "verdacht → veilig: released by an operator",
        verdacht_since(0),
        [release(5)],
        [(h(5), VERDACHT, VEILIG, "alice")],
        VEILIG,
    ),
    (
        "veilig → onveilig: blocked by an operator",
        fresh(),
        [block(2)],
        [(h(2), VEILIG, ONVEILIG, "alice")],
        ONVEILIG,
    ),
    (
        "verdacht → onveilig: blocked by an operator",
        verdacht_since(0),
        [block(2)],
        [(h(2), VERDACHT, ONVEILIG, "alice")],
        ONVEILIG,
    ),
    (
        "verdacht → onveilig: the 50th detection within 24 h",
        fresh(),
        [spam(i * 0.4) if i % 2 else virus(i * 0.4) for i in range(50)],
        [(h(0), VEILIG, VERDACHT, SYSTEM), (h(49 * 0.4), VERDACHT, ONVEILIG, SYSTEM)],
        ONVEILIG,
    ),
    (
        "veilig → onveilig at once with a threshold of 1",
        fresh(),
        [virus(1)],
        [(h(1), VEILIG, ONVEILIG, SYSTEM)],
        ONVEILIG,
        replace(DEFAULT_RULES, auto_block_detections=1),
    ),
    (
        "50 detections over more than 24 h do not block",
        fresh(),
        [spam(i * 0.5) for i in range(50)],
        [(h(0), VEILIG, VERDACHT, SYSTEM)],
        VERDACHT,
    ),
    (
        "usage incidents never block",
        fresh(),
        [Incident(USAGE, h(i / 60)) for i in range(60)],
        [(h(0), VEILIG, VERDACHT, SYSTEM)],
        VERDACHT,
    ),
    (
        "onveilig → veilig: released by an operator",
        fresh(ONVEILIG),
        [release(3)],
        [(h(3), ONVEILIG, VEILIG, "alice")],
        VEILIG,
    ),
    (
        "onveilig stays onveilig on incidents, refusals and time",
        fresh(ONVEILIG),
        [spam(1), virus(2), Incident(USAGE, h(3)), *refusals(30, 4), Tick(h(1000))],
        [],
        ONVEILIG,
    ),
    ("releasing veilig changes nothing", fresh(), [release(1)], [], VEILIG),
    ("blocking onveilig changes nothing", fresh(ONVEILIG), [block(1)], [], ONVEILIG),
    (
        "a release after an unobserved recovery records only the recovery",
        verdacht_since(0),
        [release(50)],
        [(h(48), VERDACHT, VEILIG, SYSTEM)],
        VEILIG,
    ),
    (
        "a released server starts again from zero detections",
        fresh(),
        [*[spam(i / 60) for i in range(50)], release(1), spam(1.5)],
        [
            (h(0), VEILIG, VERDACHT, SYSTEM),
            (h(49 / 60), VERDACHT, ONVEILIG, SYSTEM),
            (h(1), ONVEILIG, VEILIG, "alice"),
            (h(1.5), VEILIG, VERDACHT, SYSTEM),
        ],
        VERDACHT,
    ),
]


@pytest.mark.parametrize(
    ("start", "events", "expected", "final", "rules"),
    [pytest.param(*case[1:], *[DEFAULT_RULES][len(case) - 5 :], id=case[0]) for case in ARROWS],
)
def test_arrows(
    start: Standing, events: list[Event], expected: Expected, final: ServerState, rules: Rules
) -> None:
    standing, changes = run(start, events, rules)
    assert [(c.at, c.old, c.new, c.actor) for c in changes] == expected
    assert standing.state is final
    if changes:
        assert standing.changed_at == changes[-1].at


def test_auto_block_can_be_switched_off() -> None:
    standing, changes = run(
        fresh(), [spam(i / 60) for i in range(200)], replace(DEFAULT_RULES, auto_block=False)
    )
    assert standing.state is VERDACHT and len(changes) == 1
    assert len(standing.detections) == DEFAULT_RULES.auto_block_detections  # bounded all the same


def test_reasons_say_what_happened() -> None:
    _, changes = run(fresh(), [virus(0), Tick(h(60)), *refusals(21, 61)])
    assert changes[0].reason == "virus detected: Eicar-Signature"
    assert changes[1].reason == f"no incident for 48 h since {h(0).isoformat()}"
    assert changes[2].reason == "usage rule broken: 21 limit refusals within 1 h"
    _, changes = run(fresh(), [spam(i / 60) for i in range(50)])
    assert changes[-1].reason == (
        "50 spam/virus detections within 24 h, the last: spam detected: score 14.2"
    )
    _, changes = run(fresh(), [block(1)])
    assert (changes[0].actor, changes[0].reason) == ("alice", "open relay")


def test_a_usage_incident_starts_the_count_again() -> None:
    standing, changes = run(fresh(), refusals(41, 0, 1))
    assert len(changes) == 1 and len(standing.refusals) == 20
    standing, changes = run(fresh(), refusals(42, 0, 1))
    assert len(changes) == 1 and standing.refusals == ()
    assert standing.last_incident_at == h(41 / 60)


def test_a_late_clock_never_dates_history_backwards() -> None:
    # Another relay node's clock runs a minute behind.
    standing, changes = run(verdacht_since(10), [release(10 - 1 / 60)])
    assert [(c.at, c.new) for c in changes] == [(h(10), VEILIG)]
    standing, changes = run(verdacht_since(10), [spam(9)])
    assert standing.last_incident_at == h(10) and changes == []


def test_verdacht_without_a_recorded_incident_recovers_from_its_change() -> None:
    _, changes = run(Standing(VERDACHT, h(0)), [Tick(h(48))])
    assert [(c.at, c.new) for c in changes] == [(h(48), VEILIG)]


def test_rules_come_from_the_config() -> None:
    section = config_from_dict(
        {
            "reputation": {
                "recovery_hours": 12,
                "usage_refusals": 5,
                "auto_block": False,
                "auto_block_detections": 7,
                "auto_block_window_hours": 6.5,
            }
        }
    ).reputation
    assert Rules.from_config(section) == Rules(
        recovery=timedelta(hours=12),
        usage_refusals=5,
        usage_window=timedelta(hours=1),
        auto_block=False,
        auto_block_detections=7,
        auto_block_window=timedelta(hours=6.5),
    )
    # The defaults docs/states.rst names.
    assert Rules.from_config(Config().reputation) == Rules(
        recovery=timedelta(hours=48),
        usage_refusals=20,
        usage_window=timedelta(hours=1),
        auto_block=True,
        auto_block_detections=50,
        auto_block_window=timedelta(hours=24),
    )
    assert ReputationSection().recovery_hours == 48


@pytest.mark.parametrize(
    "bad",
    [
        {"recovery_hours": 0},
        {"auto_block_detections": 0},
        {"usage_refusals": -1},
        {"auto_block_window_hours": -2},
        {"recovery": 48},
    ],
)
def test_bad_reputation_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="reputation"):
        config_from_dict({"reputation": bad})


# Properties over random histories ----------------------------------------------

# Weighted by repetition: operators act rarely, refusals and detections come often.
KINDS = (
    ("spam",) * 3
    + ("virus",) * 2
    + ("usage",)
    + ("refusal",) * 4
    + ("tick",) * 2
    + ("release", "block")
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Rules, ServerState, list[Event]]:
    rules = Rules(
        recovery=timedelta(hours=draw(st.integers(1, 72))),
        usage_refusals=draw(st.integers(0, 4)),
        usage_window=timedelta(hours=1),
        auto_block=draw(st.booleans()),
        auto_block_detections=draw(st.integers(1, 6)),
        auto_block_window=timedelta(hours=draw(st.integers(1, 30))),
    )
    start = draw(st.sampled_from(list(ServerState)))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KINDS),
                # Mostly minutes apart (limits, detections), sometimes days (recovery).
                st.one_of(st.integers(0, 1800), st.integers(0, 4 * 86400)),
            ),
            max_size=60,
        )
    )
    events: list[Event] = []
    at = T0
    for kind, gap in steps:
        at += timedelta(seconds=gap)
        if kind in ("spam", "virus", "usage"):
            events.append(Incident(IncidentKind(kind), at, "x"))
        elif kind == "refusal":
            events.append(LimitRefusal(at))
        elif kind == "tick":
            events.append(Tick(at))
        else:
            events.append(OperatorAction(OperatorActionKind(kind), "bob", "because", at))
    return rules, start, events


@dataclass
class Oracle:
    """What the rules must have counted, kept the long way: every time, no pruning."""

    rules: Rules
    last_incident: datetime | None = None
    detections: list[datetime] = field(default_factory=list)
    refusals: list[datetime] = field(default_factory=list)

    def counts(self, event: Event, state_before: ServerState) -> tuple[bool, bool]:
        """(the event is an incident, it is a detection reaching the block threshold)."""
        if isinstance(event, OperatorAction):
            # A release or block that changes the state starts a clean slate;
            # releasing veilig or blocking onveilig changes nothing at all.
            target = ONVEILIG if event.kind is OperatorActionKind.BLOCK else VEILIG
            if state_before is not target:
                self.detections, self.refusals = [], []
            return False, False
        if state_before is ONVEILIG or isinstance(event, Tick):
            return False, False
        if isinstance(event, LimitRefusal):
            self.refusals = [r for r in self.refusals if r > event.at - self.rules.usage_window]
            self.refusals.append(event.at)
            if len(self.refusals) <= self.rules.usage_refusals:
                return False, False
            self.refusals = []
            self.last_incident = event.at
            return True, False
        assert isinstance(event, Incident)
        self.last_incident = event.at
        if event.kind is USAGE:
            return True, False
        self.detections.append(event.at)
        window = [d for d in self.detections if d > event.at - self.rules.auto_block_window]
        return True, len(window) >= self.rules.auto_block_detections


# Found by a CI-like run: releasing a veilig server forgets nothing it counted.
RELEASE_OF_VEILIG = (
    Rules(
        recovery=timedelta(hours=1),
        usage_refusals=1,
        usage_window=timedelta(hours=1),
        auto_block=False,
        auto_block_detections=1,
        auto_block_window=timedelta(hours=1),
    ),
    VEILIG,
    [
        LimitRefusal(T0),
        OperatorAction(OperatorActionKind.RELEASE, "bob", "because", T0),
        LimitRefusal(T0),
        LimitRefusal(T0 + timedelta(seconds=1)),
    ],
)


@settings(max_examples=400, deadline=None)
@given(histories())
@example(RELEASE_OF_VEILIG)
def test_invariants_over_random_histories(history: tuple[Rules, ServerState, list[Event]]) -> None:
    rules, start, events = history
    standing = Standing(start, T0)
    oracle = Oracle(rules)
    for event in events:
        before, last_incident = standing, oracle.last_incident
        # The state as it was when the event came, once any due recovery is counted.
        due = before.recovery_due(rules)
        recovered = due is not None and due <= event.at
        state_at_event = VEILIG if recovered else before.state

        outcome = apply(before, event, rules)
        standing, changes = outcome.standing, outcome.transitions
        is_incident, reaches_block = oracle.counts(event, state_at_event)

        # Every state change is exactly one transition, chained and in time order.
        chain = [before.state, *(c.new for c in changes)]
        assert [c.old for c in changes] == chain[:-1]
        assert standing.state is chain[-1]
        assert all(c.old is not c.new for c in changes)
        times = [before.changed_at, *(c.at for c in changes)]
        assert times == sorted(times) and all(c.at <= event.at for c in changes)
        assert standing.changed_at == times[-1]

        # onveilig is left only by an operator's release.
        for change in changes:
            if change.old is ONVEILIG:
                assert isinstance(event, OperatorAction)
                assert event.kind is OperatorActionKind.RELEASE and change.actor == "bob"

        # A verdacht server with no incident for the recovery period is veilig
        # when next observed, the change dated when it fell due: the recovery
        # period after its last incident (or after it became verdacht, if it
        # started out that way).
        automatic = [c for c in changes if c.actor == SYSTEM and c.new is VEILIG]
        if recovered:
            expected_due = (last_incident or T0) + rules.recovery
            assert changes[0] == Transition(
                expected_due, VERDACHT, VEILIG, changes[0].reason, SYSTEM
            )
            assert automatic == [changes[0]]
        else:
            assert automatic == []
        if isinstance(event, Tick):
            assert len(changes) == (1 if recovered else 0)
            if standing.state is VERDACHT:
                still_due = standing.recovery_due(rules)
                assert still_due is not None and still_due > event.at

        # Incidents: veilig becomes verdacht (or onveilig); verdacht's period restarts.
        if is_incident:
            assert standing.last_incident_at == event.at
            assert standing.state is not VEILIG
        if reaches_block and rules.auto_block:
            assert standing.state is ONVEILIG
            assert changes[-1].new is ONVEILIG and changes[-1].actor == SYSTEM
        elif changes and changes[-1].new is ONVEILIG:
            assert isinstance(event, OperatorAction)

        # What is kept stays bounded by the rules, whatever happens.
        assert len(standing.detections) <= rules.auto_block_detections
        assert len(standing.refusals) <= rules.usage_refusals


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 10 * 86400))
def test_observing_later_gives_the_same_history(
    history: tuple[Rules, ServerState, list[Event]], wait: int
) -> None:
    """Whether or not anyone looked in between, the same transitions are recorded."""
    rules, start, events = history
    end = (events[-1].at if events else T0) + timedelta(seconds=wait)
    _, unobserved = run(Standing(start, T0), [*events, Tick(end)], rules)
    observed: list[Event] = []
    for event in events:
        observed += [Tick(event.at - timedelta(seconds=1)), event, Tick(event.at)]
    _, watched = run(Standing(start, T0), [*observed, Tick(end)], rules)
    assert watched == unobserved

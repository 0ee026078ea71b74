"""The reputation store on SQLite and PostgreSQL: state, history, evidence, concurrency."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.errors import UnknownIdentity, UsageError
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation import SYSTEM, IncidentKind, OperatorActionKind, Rules
from osfmilter.storage import admin
from osfmilter.storage.db import make_engine
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import ReputationEvidence, SaslAccount, SmtpServer, StateChange
from tests.fakes import TEST_REGISTRATION, FixedClock

VEILIG, VERDACHT, ONVEILIG = ServerState.VEILIG, ServerState.VERDACHT, ServerState.ONVEILIG
SERVER, SASL = IdentityKind.SERVER, IdentityKind.SASL
SPAM, VIRUS = IncidentKind.SPAM, IncidentKind.VIRUS
HOUR = 3600.0
RULES = Rules.from_config(Config().reputation)


def register(engine: Engine, now: datetime) -> dict[IdentityKind, int]:
    """A customer with one SMTP server and one SASL login; their ids."""
    with Session(engine) as session, session.begin():
        admin.add_customer(session, "acme", "free", now)
        server = admin.add_server(session, "192.0.2.0/24", "acme", TEST_REGISTRATION, now)
        account = admin.add_sasl(session, "alice@example.com", "acme", now)
        return {SERVER: server.id, SASL: account.id}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ids(engine: Engine, clock: FixedClock) -> dict[IdentityKind, int]:
    return register(engine, clock.now())


def store_for(engine: Engine, clock: FixedClock, **rules: object) -> ReputationStore:
    return ReputationStore(engine, clock, replace(RULES, **rules))  # type: ignore[arg-type]


def row(engine: Engine, kind: IdentityKind, id_: int) -> tuple[str, datetime, datetime | None]:
    table = SmtpServer if kind is SERVER else SaslAccount
    with engine.connect() as connection:
        found = connection.execute(
            select(table.state, table.state_changed_at, table.last_incident_at).where(
                table.id == id_
            )
        ).one()
    return found.state, found.state_changed_at, found.last_incident_at


def history_rows(engine: Engine) -> list[tuple[datetime, str, str, str]]:
    with engine.connect() as connection:
        return [
            (r.at, r.old_state, r.new_state, r.actor)
            for r in connection.execute(
                select(StateChange).order_by(StateChange.at, StateChange.id)
            )
        ]


def evidence_count(engine: Engine, kind: str | None = None) -> int:
    query = select(func.count()).select_from(ReputationEvidence)
    if kind is not None:
        query = query.where(ReputationEvidence.kind == kind)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


@pytest.mark.parametrize("kind", [SERVER, SASL])
def test_a_detection_makes_veilig_verdacht_with_one_history_row(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int], kind: IdentityKind
) -> None:
    store = store_for(engine, clock)
    clock.advance(60)
    assert store.record_incident(kind, ids[kind], VIRUS, "Eicar-Signature") is VERDACHT
    assert row(engine, kind, ids[kind]) == ("verdacht", clock.now(), clock.now())
    history = store.history(kind, ids[kind])
    assert [(c.at, c.old, c.new, c.actor, c.reason) for c in history] == [
        (clock.now(), VEILIG, VERDACHT, SYSTEM, "virus detected: Eicar-Signature")
    ]
    # A second incident restarts the period, without a transition.
    clock.advance(HOUR)
    assert store.record_incident(kind, ids[kind], SPAM, "score 12") is VERDACHT
    assert len(store.history(kind, ids[kind])) == 1
    assert row(engine, kind, ids[kind])[2] == clock.now()
    other = SASL if kind is SERVER else SERVER
    assert store.history(other, ids[other]) == []


def test_recovery_is_recorded_at_its_due_time(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    store.record_incident(SERVER, ids[SERVER], SPAM, "score 20")
    incident = clock.now()
    clock.advance(48 * HOUR - 1)
    assert store.observe(SERVER, ids[SERVER]) is VERDACHT
    assert len(history_rows(engine)) == 1
    clock.advance(5 * 24 * HOUR)  # nobody looked for days
    assert store.observe(SERVER, ids[SERVER]) is VEILIG
    due = incident + timedelta(hours=48)
    assert history_rows(engine)[-1] == (due, "verdacht", "veilig", SYSTEM)
    assert row(engine, SERVER, ids[SERVER])[:2] == ("veilig", due)
    assert store.observe(SERVER, ids[SERVER]) is VEILIG
    assert len(history_rows(engine)) == 2


def test_an_incident_after_an_unobserved_recovery_records_both(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    start = clock.now()
    store.record_incident(SASL, ids[SASL], SPAM, "")
    clock.advance(72 * HOUR)
    assert store.record_incident(SASL, ids[SASL], VIRUS, "Eicar") is VERDACHT
    assert [(c.at, c.old, c.new) for c in store.history(SASL, ids[SASL])] == [
        (start, VEILIG, VERDACHT),
        (start + timedelta(hours=48), VERDACHT, VEILIG),
        (clock.now(), VEILIG, VERDACHT),
    ]


def test_usage_rule_counts_limit_refusals_within_an_hour(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    for _ in range(20):
        assert store.record_limit_refusal(SERVER, ids[SERVER]) is VEILIG
        clock.advance(180)
    assert evidence_count(engine, "refusal") == 20
    # The first refusals have left the hour: the 21st refusal is not the 21st in an hour.
    assert store.record_limit_refusal(SERVER, ids[SERVER]) is VEILIG
    assert evidence_count(engine, "refusal") == 20
    clock.advance(1)
    assert store.record_limit_refusal(SERVER, ids[SERVER]) is VERDACHT
    assert history_rows(engine)[-1][1:] == ("veilig", "verdacht", SYSTEM)
    assert "21 limit refusals within 1 h" in store.history(SERVER, ids[SERVER])[-1].reason
    assert evidence_count(engine, "refusal") == 0  # counted, and the count starts again


def test_auto_block_at_the_threshold_within_the_window(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock, auto_block_detections=5, auto_block_window=timedelta(hours=2))
    for _ in range(4):
        assert store.record_incident(SERVER, ids[SERVER], SPAM, "") is VERDACHT
        clock.advance(HOUR)
    # Two of the four have left the 2-hour window by now.
    assert store.record_incident(SERVER, ids[SERVER], VIRUS, "x") is VERDACHT
    assert evidence_count(engine, "detection") == 2
    for _ in range(2):
        clock.advance(60)
        assert store.record_incident(SERVER, ids[SERVER], SPAM, "") is VERDACHT
    clock.advance(60)
    assert store.record_incident(SERVER, ids[SERVER], SPAM, "score 30") is ONVEILIG
    assert [r[1:] for r in history_rows(engine)] == [
        ("veilig", "verdacht", SYSTEM),
        ("verdacht", "onveilig", SYSTEM),
    ]
    assert store.history(SERVER, ids[SERVER])[-1].reason.startswith(
        "5 spam/virus detections within 2 h"
    )
    # onveilig takes no notice of incidents, refusals, or time.
    store.record_incident(SERVER, ids[SERVER], SPAM, "")
    store.record_limit_refusal(SERVER, ids[SERVER])
    clock.advance(30 * 24 * HOUR)
    assert store.observe(SERVER, ids[SERVER]) is ONVEILIG
    assert len(history_rows(engine)) == 2


def test_auto_block_can_be_switched_off(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock, auto_block=False)
    for _ in range(120):
        clock.advance(10)
        assert store.record_incident(SERVER, ids[SERVER], SPAM, "") is VERDACHT
    assert len(history_rows(engine)) == 1
    assert evidence_count(engine) == 50  # what is kept stays bounded


def test_evidence_rows_are_kept_not_rewritten(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock, auto_block_detections=3)
    seen: list[set[int]] = []
    for _ in range(2):
        clock.advance(0.123457)  # times with microseconds survive the round trip
        store.record_incident(SASL, ids[SASL], SPAM, "")
        store.record_limit_refusal(SASL, ids[SASL])
        with engine.connect() as connection:
            seen.append(set(connection.scalars(select(ReputationEvidence.id))))
    assert seen[0] < seen[1] and len(seen[1]) == 4


def test_operators_release_and_block(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock, auto_block_detections=3)
    server = ids[SERVER]
    assert store.operator(SERVER, server, OperatorActionKind.RELEASE, "bob", "why not") == []
    for _ in range(3):
        store.record_incident(SERVER, server, SPAM, "")
    assert store.observe(SERVER, server) is ONVEILIG
    clock.advance(HOUR)
    changes = store.operator(SERVER, server, OperatorActionKind.RELEASE, "bob", "spoke to them")
    assert [(c.at, c.old, c.new, c.actor, c.reason) for c in changes] == [
        (clock.now(), ONVEILIG, VEILIG, "bob", "spoke to them")
    ]
    assert row(engine, SERVER, server)[:2] == ("veilig", clock.now())
    # The detections that blocked it were forgotten with the release.
    assert evidence_count(engine) == 0
    assert store.record_incident(SERVER, server, SPAM, "") is VERDACHT
    changes = store.operator(SERVER, server, OperatorActionKind.BLOCK, "carol", "open relay")
    assert [(c.old, c.new, c.actor) for c in changes] == [(VERDACHT, ONVEILIG, "carol")]
    assert store.operator(SERVER, server, OperatorActionKind.BLOCK, "carol", "again") == []
    assert [r[1:] for r in history_rows(engine)] == [
        ("veilig", "verdacht", SYSTEM),
        ("verdacht", "onveilig", SYSTEM),
        ("onveilig", "veilig", "bob"),
        ("veilig", "verdacht", SYSTEM),
        ("verdacht", "onveilig", "carol"),
    ]


def test_a_release_after_an_unobserved_recovery_records_the_recovery(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    store.record_incident(SERVER, ids[SERVER], SPAM, "")
    clock.advance(49 * HOUR)
    changes = store.operator(SERVER, ids[SERVER], OperatorActionKind.RELEASE, "bob", "x")
    assert [(c.new, c.actor) for c in changes] == [(VEILIG, SYSTEM)]


@pytest.mark.parametrize(
    ("actor", "reason"),
    [
        ("", "x"),
        ("bob", ""),
        ("bob", "two\nlines"),
        ("b\tob", "x"),
        ("x" * 101, "x"),
        ("bob", "x" * 401),
        ("System", "pretending"),
    ],
)
def test_operator_text_is_one_bounded_line(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int], actor: str, reason: str
) -> None:
    store = store_for(engine, clock)
    with pytest.raises(UsageError):
        store.operator(SERVER, ids[SERVER], OperatorActionKind.BLOCK, actor, reason)
    assert history_rows(engine) == [] and row(engine, SERVER, ids[SERVER])[0] == "veilig"


def test_unknown_identities_are_named(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    with pytest.raises(UnknownIdentity, match="no SMTP server with id 999"):
        store.record_incident(SERVER, 999, SPAM, "")
    with pytest.raises(UnknownIdentity, match="no SASL account"):
        store.observe(SASL, 999)
    with pytest.raises(UnknownIdentity):
        store.history(SERVER, 999)


def test_removing_an_identity_removes_its_reputation(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    store.record_incident(SERVER, ids[SERVER], SPAM, "")
    store.record_limit_refusal(SERVER, ids[SERVER])
    with Session(engine) as session, session.begin():
        admin.remove_server(session, "192.0.2.0/24")
    assert history_rows(engine) == [] and evidence_count(engine) == 0


def test_a_long_reason_is_cut_to_fit(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock)
    store.record_incident(SERVER, ids[SERVER], VIRUS, "Win.Test." + "x" * 1000 + "\x00")
    assert len(store.history(SERVER, ids[SERVER])[0].reason) == 500


def test_an_undecodable_byte_in_a_reason_is_stored_as_an_escape(
    engine: Engine, clock: FixedClock, ids: dict[IdentityKind, int]
) -> None:
    store = store_for(engine, clock, auto_block_detections=1)
    detail = b"Win.Test.\xe4".decode("utf-8", "surrogateescape")  # as a scanner may name it
    store.record_incident(SERVER, ids[SERVER], VIRUS, detail)
    reasons = [change.reason for change in store.history(SERVER, ids[SERVER])]
    assert reasons and all("Win.Test.\\xe4" in reason for reason in reasons), reasons


# Two processes at once -----------------------------------------------------------


def _worker(
    url: str,
    kind: str,
    identity_id: int,
    what: str,
    count: int,
    barrier: multiprocessing.synchronize.Barrier,
) -> None:
    engine = make_engine(url, Config().database.timeout)
    store = ReputationStore(engine, SystemClock(), RULES)
    barrier.wait(timeout=60)
    for number in range(count):
        if what == "refusal":
            store.record_limit_refusal(IdentityKind(kind), identity_id)
        else:
            store.record_incident(IdentityKind(kind), identity_id, SPAM, f"message {number}")
    engine.dispose()


def run_at_once(db_url: str, kind: IdentityKind, identity_id: int, what: str, count: int) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_worker, args=(db_url, str(kind), identity_id, what, count, barrier))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]


@pytest.mark.parametrize("kind", [SERVER, SASL])
def test_two_processes_recording_detections_at_once(
    db_url: str, engine: Engine, kind: IdentityKind
) -> None:
    ids = register(engine, SystemClock().now() - timedelta(minutes=1))
    run_at_once(db_url, kind, ids[kind], "detection", 30)
    rows = history_rows(engine)
    # 60 detections: verdacht at the first, onveilig at the 50th, each exactly once.
    assert [r[1:] for r in rows] == [
        ("veilig", "verdacht", SYSTEM),
        ("verdacht", "onveilig", SYSTEM),
    ]
    state, changed_at, _ = row(engine, kind, ids[kind])
    assert (state, changed_at) == ("onveilig", rows[-1][0])
    # The 50 detections that blocked it are still there; the other 10 met onveilig.
    assert evidence_count(engine, "detection") == 50


def test_two_processes_recording_refusals_at_once(db_url: str, engine: Engine) -> None:
    ids = register(engine, SystemClock().now() - timedelta(minutes=1))
    run_at_once(db_url, SERVER, ids[SERVER], "refusal", 15)
    # 30 refusals: the 21st is the usage incident, 9 are counted towards the next.
    assert [r[1:] for r in history_rows(engine)] == [("veilig", "verdacht", SYSTEM)]
    assert row(engine, SERVER, ids[SERVER])[0] == "verdacht"
    assert evidence_count(engine, "refusal") == 9

"""The outbox on SQLite and PostgreSQL: each notice in the transaction of its cause.

A state change, a volume threshold (exactly 80 % and 100 % count) and a
customer's first refusal of a kind per day write one notification and one
delivery per channel; a change that rolls back writes none; a kind the
operator turned off writes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from osfmilter.config import Config
from osfmilter.events import EventRecord
from osfmilter.limits.volume import VolumeCharge
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import NoticePolicy, first_refusal, volume_refused
from osfmilter.reputation import IncidentKind, OperatorActionKind, Rules
from osfmilter.storage import admin, contacts, outbox
from osfmilter.storage.domains import add_domain
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import Notification, NotificationDelivery, SmtpServer
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION, FixedClock

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RULES = Rules.from_config(Config().reputation)
SERVER = IdentityKind.SERVER


@pytest.fixture
def server_id(engine: Engine) -> int:
    """acme (free) with a contact, a webhook and the server 192.0.2.0/24."""
    with Session(engine) as session, session.begin():
        admin.add_customer(session, "acme", "free", NOW)
        contacts.add_contact(session, "acme", "ops@acme.example", NOW)
        contacts.add_webhook(session, "acme", "https://hooks.acme.example/osf", NOW)
        return admin.add_server(session, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW).id


def notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.at)))


def deliveries(engine: Engine, notification_id: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(NotificationDelivery.channel, NotificationDelivery.state)
            .where(NotificationDelivery.notification_id == notification_id)
            .order_by(NotificationDelivery.channel)
        )
        return [(channel, state) for channel, state in rows]


def reputation(engine: Engine, disabled: tuple[str, ...] = ()) -> ReputationStore:
    return ReputationStore(engine, FixedClock(NOW), RULES, NoticePolicy(disabled))


def test_turning_verdacht_writes_one_notice_with_reason_and_recovery(
    engine: Engine, server_id: int
) -> None:
    reputation(engine).record_incident(SERVER, server_id, IncidentKind.SPAM, "score 1000")
    [notice] = notifications(engine)
    assert notice.type == "state.verdacht"
    assert notice.identity == "server:192.0.2.0/24" and notice.at == NOW
    assert uuid.UUID(notice.id).version == 4
    details = json.loads(notice.details)
    assert details["reason"] == "spam detected: score 1000"
    assert details["recovers_at"] == (NOW + timedelta(hours=48)).isoformat()
    assert details["detections"] == 1 and details["old_state"] == "veilig"
    assert deliveries(engine, notice.id) == [("email", "pending"), ("webhook", "pending")]
    # verdacht again: the recovery starts again, but the state did not change.
    reputation(engine).record_incident(SERVER, server_id, IncidentKind.SPAM, "score 999")
    assert len(notifications(engine)) == 1


def test_block_and_release_tell_how_to_get_released_and_that_it_is_over(
    engine: Engine, server_id: int
) -> None:
    store = reputation(engine)
    store.operator(SERVER, server_id, OperatorActionKind.BLOCK, "op", "spam gateway")
    store.operator(SERVER, server_id, OperatorActionKind.RELEASE, "op", "cleaned up")
    blocked, released = notifications(engine)
    assert blocked.type == "state.onveilig" and "release" in json.loads(blocked.details)
    assert released.type == "state.veilig"
    assert json.loads(released.details)["reason"] == "cleaned up"


def test_a_state_change_that_rolls_back_tells_nobody(
    engine: Engine, server_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = reputation(engine)
    notify = ReputationStore._notify

    def notify_then_fail(*args: object) -> None:
        notify(*args)  # type: ignore[arg-type]
        raise RuntimeError("the transaction fails after the outbox write")

    monkeypatch.setattr(ReputationStore, "_notify", notify_then_fail)
    with pytest.raises(RuntimeError):
        store.record_incident(SERVER, server_id, IncidentKind.VIRUS, "Eicar")
    assert notifications(engine) == []
    with Session(engine) as session:
        assert session.get(SmtpServer, server_id).state == ServerState.VEILIG  # type: ignore[union-attr]


def test_a_kind_turned_off_writes_nothing(engine: Engine, server_id: int) -> None:
    reputation(engine, ("state",)).record_incident(SERVER, server_id, IncidentKind.SPAM)
    assert notifications(engine) == []
    store = reputation(engine, ("state.verdacht",))
    store.operator(SERVER, server_id, OperatorActionKind.RELEASE, "op", "fine")
    assert [n.type for n in notifications(engine)] == ["state.veilig"]


def test_without_contacts_or_webhooks_the_notice_is_kept_with_no_delivery(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        admin.add_customer(session, "quiet", "free", NOW)
        quiet_id = admin.add_server(session, "198.51.100.0/24", "quiet", TEST_REGISTRATION, NOW).id
    reputation(engine).record_incident(SERVER, quiet_id, IncidentKind.SPAM)
    [notice] = notifications(engine)
    assert deliveries(engine, notice.id) == []


# Volume ----------------------------------------------------------------------


def event(server: Identity) -> EventRecord:
    return EventRecord(
        at=NOW,
        node="n",
        queue_id="Q",
        stage="eom",
        client_ip="192.0.2.10",
        identity=server,
        envelope_sender="a@example.com",
        header_from_domain="example.com",
        rcpt_count=1,
        size=1,
        action="accept",
        reason="accepted",
        smtp_code=250,
        enhanced_code="2.0.0",
    )


@pytest.fixture
def sender(engine: Engine, server_id: int) -> Identity:
    with Session(engine) as session:
        customer_id = admin.get_customer(session, "acme").id
    return Identity(
        SERVER,
        server_id,
        "192.0.2.0/24",
        customer_id,
        "acme",
        "free",
        ServerState.VEILIG,
        frozenset(),
    )


def charge(sender: Identity, volume: int, month: str = "2026-11") -> VolumeCharge:
    # An allowance of exactly 1000 bytes: base 1000, nothing earned by inbound mail.
    return VolumeCharge(sender.customer_id, "example.com", month, volume, True, 1000, 0.0)


def test_volume_notices_at_exactly_80_and_100_percent_once_a_month(
    engine: Engine, sender: Identity
) -> None:
    store = SqlStore(engine)
    types = lambda: [n.type for n in notifications(engine)]  # noqa: E731
    assert store.record_accept(event(sender), charge(sender, 799)) is None
    assert types() == []
    assert store.record_accept(event(sender), charge(sender, 1)) is None  # 800: exactly 80 %
    assert types() == ["volume.80"]
    assert store.record_accept(event(sender), charge(sender, 199)) is None  # 999
    assert types() == ["volume.80"]
    assert store.record_accept(event(sender), charge(sender, 1)) is None  # 1000: exactly 100 %
    assert sorted(types()) == ["volume.100", "volume.80"]
    assert store.record_accept(event(sender), charge(sender, 1)) is not None  # denied
    assert len(types()) == 2
    [full] = [n for n in notifications(engine) if n.type == "volume.100"]
    details = json.loads(full.details)
    assert (details["used_bytes"], details["allowance_bytes"]) == (1000, 1000)
    assert details["domain"] == "example.com" and details["month"] == "2026-11"
    assert full.identity == "server:192.0.2.0/24"
    assert deliveries(engine, full.id) == [("email", "pending"), ("webhook", "pending")]
    # A new month: its own thresholds. Past 80 % in one message counts as reaching it.
    assert store.record_accept(event(sender), charge(sender, 900, "2026-12")) is None
    assert sorted(types()) == ["volume.100", "volume.80", "volume.80"]


def test_a_threshold_is_sent_once_a_month_even_by_another_process(
    engine: Engine, sender: Identity
) -> None:
    SqlStore(engine).record_accept(event(sender), charge(sender, 800))
    # Another milter process (its own memory) crosses 80 % again: the allowance grew
    # with inbound mail meanwhile (here: the same month charged once more from 0).
    other = SqlStore(engine)
    grown = replace(charge(sender, 1), base=2000)
    other.record_accept(event(sender), replace(grown, volume=800))  # 1601 of 2000: 80 % again
    assert [n.type for n in notifications(engine)] == ["volume.80"]


def test_a_denied_message_is_the_100_percent_notice_if_none_was_sent(
    engine: Engine, sender: Identity
) -> None:
    store = SqlStore(engine)
    store.record_accept(event(sender), charge(sender, 700))
    denied = store.record_accept(event(sender), charge(sender, 400))
    assert denied is not None
    # The session records the refusal with its notice (session.recorder).
    notice = volume_refused(
        customer_id=sender.customer_id,
        identity=sender.label,
        domain="example.com",
        month="2026-11",
        used=denied.used,
        allowance=denied.allowance,
        at=NOW,
    )
    refused = replace(event(sender), action="tempfail", reason="volume_limit")
    store.record(refused, [notice])
    store.record(refused, [replace(notice, id=str(uuid.uuid4()))])  # the next one: nothing
    assert [n.type for n in notifications(engine)] == ["volume.100"]


# Refusals --------------------------------------------------------------------


def test_the_first_refusal_of_a_kind_per_day_is_told_once(engine: Engine, sender: Identity) -> None:
    def refusal(at: datetime) -> list[object]:
        return [
            first_refusal(
                NoticeType.REFUSAL_FOREIGN_DOMAIN,
                customer_id=sender.customer_id,
                identity=sender.label,
                at=at,
                details={"domain": "other.example"},
            )
        ]

    refused = replace(event(sender), action="reject", reason="foreign_sender")
    first, second = SqlStore(engine), SqlStore(engine)  # two processes
    first.record(refused, refusal(NOW))  # type: ignore[arg-type]
    first.record(refused, refusal(NOW + timedelta(hours=1)))  # type: ignore[arg-type]
    second.record(refused, refusal(NOW + timedelta(hours=2)))  # type: ignore[arg-type]
    assert len(notifications(engine)) == 1
    first.record(refused, refusal(NOW + timedelta(days=1)))  # type: ignore[arg-type]
    assert [n.type for n in notifications(engine)] == ["refusal.foreign_domain"] * 2


def test_refusal_notices_turned_off_are_not_written(engine: Engine, sender: Identity) -> None:
    store = SqlStore(engine, notices=NoticePolicy(["refusal"]))
    notice = first_refusal(
        NoticeType.REFUSAL_FOREIGN_DOMAIN,
        customer_id=sender.customer_id,
        identity=sender.label,
        at=NOW,
        details={},
    )
    store.record(replace(event(sender), action="reject", reason="foreign_sender"), [notice])
    assert notifications(engine) == []


# Unregistered clients sending as a customer's domain ---------------------------


def relay_denied(sender: str, at: datetime = NOW) -> EventRecord:
    return EventRecord(
        at=at,
        node="n",
        queue_id="",
        stage="mail",
        client_ip="203.0.113.9",
        identity=None,
        envelope_sender=sender,
        header_from_domain="",
        rcpt_count=0,
        size=0,
        action="reject",
        reason="relay_denied",
        smtp_code=550,
        enhanced_code="5.7.1",
    )


def test_relay_refusals_as_a_customers_domain_tell_it_once_a_day(
    engine: Engine, server_id: int
) -> None:
    with Session(engine) as session, session.begin():
        add_domain(session, "example.com", "acme", NOW)
    store, policy = SqlStore(engine), NoticePolicy()
    store.record(relay_denied("old@example.com"))
    assert outbox.derive_unregistered(engine, policy) == 0  # starts at the newest event
    store.record(relay_denied("someone@stranger.example"))
    store.record(relay_denied("news@mail.example.com"))  # within acme's domain
    store.record(relay_denied("again@example.com", NOW + timedelta(hours=1)))
    outbox.derive_unregistered(engine, policy)
    [notice] = notifications(engine)
    assert notice.type == "refusal.unregistered_sender" and notice.identity == ""
    details = json.loads(notice.details)
    assert (details["domain"], details["sender"], details["client"]) == (
        "example.com",
        "news@mail.example.com",
        "203.0.113.9",
    )
    assert deliveries(engine, notice.id) == [("email", "pending"), ("webhook", "pending")]
    outbox.derive_unregistered(engine, policy)  # nothing new since
    assert len(notifications(engine)) == 1
    store.record(relay_denied("x@example.com", NOW + timedelta(days=1)))
    outbox.derive_unregistered(engine, policy)
    assert len(notifications(engine)) == 2


def test_relay_refusal_notices_turned_off_are_skipped_for_good(
    engine: Engine, server_id: int
) -> None:
    with Session(engine) as session, session.begin():
        add_domain(session, "example.com", "acme", NOW)
    store = SqlStore(engine)
    outbox.derive_unregistered(engine, NoticePolicy())
    store.record(relay_denied("a@example.com"))
    outbox.derive_unregistered(engine, NoticePolicy(["refusal.unregistered_sender"]))
    outbox.derive_unregistered(engine, NoticePolicy())  # turned on again: the past stays past
    assert notifications(engine) == []


# Retention -----------------------------------------------------------------------


def test_purge_removes_old_finished_notifications_and_keeps_pending_ones(
    engine: Engine, server_id: int
) -> None:
    store = reputation(engine)
    store.record_incident(SERVER, server_id, IncidentKind.SPAM)  # NOW: pending
    later = ReputationStore(engine, FixedClock(NOW + timedelta(days=3)), RULES, NoticePolicy())
    later.operator(SERVER, server_id, OperatorActionKind.RELEASE, "op", "fine")
    verdacht, released = notifications(engine)
    with Session(engine) as session, session.begin():
        for delivery in session.scalars(
            select(NotificationDelivery).where(NotificationDelivery.notification_id == verdacht.id)
        ):
            delivery.state = "sent"
    cutoff = NOW + timedelta(days=10)
    assert outbox.count_finished(engine, NOW) == 0  # nothing older than NOW
    assert outbox.count_finished(engine, cutoff) == 1  # the released one is still pending
    assert outbox.purge_finished(engine, cutoff, batch_size=1) == 1
    assert [n.id for n in notifications(engine)] == [released.id]
    assert deliveries(engine, verdacht.id) == []
    assert len(deliveries(engine, released.id)) == 2

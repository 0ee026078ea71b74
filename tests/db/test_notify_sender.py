"""``osfmilter notify run`` on SQLite and PostgreSQL: every notification delivered, at
least once, by e-mail to the contacts and signed to the webhooks; retried with backoff;
given up after max_age; never sent by two senders at once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from osfmilter.config import Config, config_from_dict
from osfmilter.model import IdentityKind
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import Notice, NoticePolicy
from osfmilter.notify.sender import Sender
from osfmilter.reputation import IncidentKind, Rules
from osfmilter.storage import admin, contacts, outbox
from osfmilter.storage.db import make_engine
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import NotificationDelivery
from tests.fakes import TEST_REGISTRATION, FixedClock
from tests.harness.sink import Sink
from tests.harness.webhooks import WebhookReceiver

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CONTACT = "ops@acme.example"


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as sink:
        yield sink


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def settings(sink: Sink, **notify: object) -> Config:
    return config_from_dict(
        {
            "notify": {
                "smtp": f"127.0.0.1:{sink.port}",
                "sender": "relay@osf.example",
                "timeout": 5,
                **notify,
            }
        }
    )


@pytest.fixture
def secret(engine: Engine, receiver: WebhookReceiver) -> str:
    """acme: a contact, a webhook at the receiver, and the server 192.0.2.0/24 turned
    verdacht by a spam detection (one notification, two deliveries)."""
    with Session(engine) as session, session.begin():
        admin.add_customer(session, "acme", "free", NOW)
        contacts.add_contact(session, "acme", CONTACT, NOW)
        _, secret = contacts.add_webhook(session, "acme", receiver.url, NOW)
        server_id = admin.add_server(session, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW).id
    reputation = ReputationStore(
        engine, FixedClock(NOW), Rules.from_config(Config().reputation), NoticePolicy()
    )
    reputation.record_incident(IdentityKind.SERVER, server_id, IncidentKind.SPAM, "score 1000")
    return secret


def states(engine: Engine) -> list[tuple[str, str, int]]:
    with Session(engine) as session:
        rows = session.execute(
            select(
                NotificationDelivery.channel,
                NotificationDelivery.state,
                NotificationDelivery.attempts,
            ).order_by(NotificationDelivery.channel)
        )
        return [(channel, state, attempts) for channel, state, attempts in rows]


def test_a_state_change_is_mailed_to_the_contacts_and_posted_signed(
    engine: Engine, sink: Sink, receiver: WebhookReceiver, clock: FixedClock, secret: str
) -> None:
    sender = Sender(engine, settings(sink), clock)
    assert sender.run_once().sent == 2
    [mail] = sink.messages
    [post] = receiver.received
    event_id = post.document["id"]
    assert mail.rcpt_tos == (CONTACT,) and mail.header("To") == CONTACT
    assert mail.header("From") == "relay@osf.example"
    assert mail.header("Subject") == "osfmilter: your SMTP server 192.0.2.0/24 is now verdacht"
    assert mail.header("X-Osfmilter-Event") == event_id
    content = message_from_bytes(mail.data, policy=default).get_body().get_content()  # type: ignore[union-attr]
    text = " ".join(content.split())
    assert "is now verdacht (suspicious): spam detected: score 1000." in text
    assert "veilig again by itself at 2026-12-01T12:00:00+00:00" in text
    assert f"  event id     {event_id}\r\n" in content and "recovers_at" in text
    document = post.document
    assert set(document) == {"id", "type", "time", "customer", "identity", "details"}
    assert (document["type"], document["customer"], document["identity"]) == (
        "state.verdacht",
        "acme",
        "server:192.0.2.0/24",
    )
    assert document["time"] == "2026-11-29T12:00:00+00:00"
    assert document["details"]["reason"] == "spam detected: score 1000"
    assert post.headers["x-osfmilter-event"] == event_id
    assert post.verifies(secret, now=clock.now().timestamp())
    assert not post.verifies("another secret", now=clock.now().timestamp())
    assert states(engine) == [("email", "sent", 1), ("webhook", "sent", 1)]
    # Sent once: the next passes find nothing.
    clock.advance(3600)
    assert sender.run_once().claimed == 0
    assert len(sink.messages) == 1 and len(receiver.received) == 1


def test_a_receiver_that_is_down_gets_it_once_it_is_back(
    engine: Engine, sink: Sink, receiver: WebhookReceiver, clock: FixedClock, secret: str
) -> None:
    receiver.stop()
    sender = Sender(engine, settings(sink, backoff_base_seconds=30), clock)
    result = sender.run_once()
    assert (result.sent, result.retried) == (1, 1)
    assert states(engine) == [("email", "sent", 1), ("webhook", "pending", 1)]
    with Session(engine) as session:
        delivery = session.scalars(
            select(NotificationDelivery).where(NotificationDelivery.channel == "webhook")
        ).one()
        assert delivery.next_attempt_at == NOW + timedelta(seconds=30)
        assert "127.0.0.1" in delivery.last_error
    assert sender.run_once().claimed == 0  # not due yet
    clock.advance(31)
    assert sender.run_once().retried == 1  # still down: 60 s now
    clock.advance(61)
    back = WebhookReceiver(receiver.port)
    with back:
        assert sender.run_once().sent == 1
        [post] = back.received
    assert post.verifies(secret, now=clock.now().timestamp())
    assert states(engine) == [("email", "sent", 1), ("webhook", "sent", 3)]


class Killed(BaseException):
    """The process dies here (SIGKILL): nothing after it runs."""


def test_a_sender_killed_between_send_and_mark_sends_it_again_with_the_same_id(
    engine: Engine,
    sink: Sink,
    receiver: WebhookReceiver,
    clock: FixedClock,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def die(self: Sender, due: object) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(Sender, "_mark_sent", die)
        with pytest.raises(Killed):
            Sender(engine, settings(sink), clock).run_once()
    assert len(sink.messages) + len(receiver.received) == 1  # sent, never marked
    restarted = Sender(engine, settings(sink), clock)
    assert restarted.run_once().claimed == 0  # claimed by the dead one until its lease ends
    clock.advance(restarted.lease.total_seconds() + 1)
    assert restarted.run_once().sent == 2
    ids = [m.header("X-Osfmilter-Event") for m in sink.messages]
    ids += [p.document["id"] for p in receiver.received]
    assert len(ids) == 3 and len(set(ids)) == 1  # one delivered twice, same event id
    # Both were claimed by the pass that died: each counts two attempts.
    assert states(engine) == [("email", "sent", 2), ("webhook", "sent", 2)]


def test_a_delivery_is_given_up_after_max_age_and_that_is_recorded(
    engine: Engine, sink: Sink, receiver: WebhookReceiver, clock: FixedClock, secret: str
) -> None:
    receiver.status = 500
    sender = Sender(engine, settings(sink, max_age_hours=1, backoff_base_seconds=600), clock)
    assert sender.run_once().retried == 1
    for _ in range(10):
        clock.advance(3600)
        if sender.run_once().failed:
            break
    assert states(engine)[1][:2] == ("webhook", "failed")
    with Session(engine) as session:
        error = session.scalars(
            select(NotificationDelivery.last_error).where(NotificationDelivery.channel == "webhook")
        ).one()
    assert "answered 500" in error
    sender.observe()
    metrics = sender.metrics.registry
    assert metrics.get_sample_value("osfmilter_notification_deliveries", {"state": "failed"}) == 1
    assert metrics.get_sample_value("osfmilter_notification_deliveries", {"state": "sent"}) == 1


def test_deliveries_nobody_sent_in_time_are_given_up_unsent(
    engine: Engine, sink: Sink, clock: FixedClock, secret: str
) -> None:
    sender = Sender(engine, settings(sink, max_age_hours=2), clock)
    sender.observe()
    metrics = sender.metrics.registry
    assert metrics.get_sample_value("osfmilter_notification_deliveries", {"state": "pending"}) == 2
    clock.advance(600)
    sender.observe()
    assert metrics.get_sample_value("osfmilter_notification_oldest_pending_seconds") == 600
    clock.advance(3 * 3600)
    assert sender.run_once().failed == 2
    assert [state for _, state, _ in states(engine)] == ["failed", "failed"]
    assert sink.messages == []


def test_backoff_doubles_up_to_its_maximum(engine: Engine, sink: Sink, clock: FixedClock) -> None:
    sender = Sender(engine, settings(sink, backoff_base_seconds=30, backoff_max_seconds=100), clock)
    assert [sender.backoff(n).total_seconds() for n in (1, 2, 3, 4, 50)] == [30, 60, 100, 100, 100]


def test_two_senders_at_once_send_each_notification_once(
    db_url: str, engine: Engine, sink: Sink, receiver: WebhookReceiver, clock: FixedClock
) -> None:
    with Session(engine) as session, session.begin():
        customer = admin.add_customer(session, "acme", "free", NOW)
        contacts.add_webhook(session, "acme", receiver.url, NOW)
        customer_id = customer.id
    notices = [
        Notice(NoticeType.STATE_VEILIG, NOW, customer_id, f"server:192.0.2.{i}/32", {"n": i})
        for i in range(40)
    ]
    with engine.begin() as connection:
        outbox.write(connection, notices)
    receiver.delay = 0.02  # long enough that the two claim while the other sends
    engines = [make_engine(db_url, Config().database.timeout) for _ in range(2)]
    try:
        senders = [Sender(other, settings(sink), clock) for other in engines]
        done = threading.Barrier(2)

        def drain(sender: Sender) -> None:
            done.wait()
            while sender.run_once().claimed:
                pass

        threads = [threading.Thread(target=drain, args=(s,)) for s in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for other in engines:
            other.dispose()
    counted = Counter(post.document["id"] for post in receiver.received)
    assert set(counted) == {notice.id for notice in notices}
    assert set(counted.values()) == {1}
    assert {state for _, state, _ in states(engine)} == {"sent"}


def test_an_unexpected_error_is_a_failed_attempt_and_the_others_still_go_out(
    engine: Engine,
    sink: Sink,
    receiver: WebhookReceiver,
    clock: FixedClock,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr("osfmilter.notify.email.send", broken)
    result = Sender(engine, settings(sink), clock).run_once()
    assert (result.sent, result.retried) == (1, 1)
    assert len(receiver.received) == 1
    with Session(engine) as session:
        errors = session.scalars(select(NotificationDelivery.last_error)).all()
    assert "ValueError: a bug" in errors


def guard(engine: Engine, url: str) -> None:
    """acme's webhook made a customer's (public_only), at ``url``."""
    with Session(engine) as session, session.begin():
        [(webhook, _)] = contacts.webhooks(session, "acme")
        webhook.url, webhook.public_only = url, True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_customers_webhook_never_reaches_loopback(
    engine: Engine,
    sink: Sink,
    receiver: WebhookReceiver,
    clock: FixedClock,
    secret: str,
    host: str,
) -> None:
    guard(engine, f"http://{host}:{receiver.port}/hook")
    assert Sender(engine, settings(sink), clock).run_once().retried == 1
    assert receiver.received == []
    assert states(engine) == [("email", "sent", 1), ("webhook", "pending", 1)]
    with Session(engine) as session:
        error = session.scalar(
            select(NotificationDelivery.last_error).where(NotificationDelivery.channel == "webhook")
        )
    assert error is not None and "not a public address: refused, not sent" in error
    assert f"{host} resolves to 127.0.0.1" in error or f"{host} resolves to ::1" in error


def test_the_operators_loopback_webhook_still_delivers(
    engine: Engine, sink: Sink, receiver: WebhookReceiver, clock: FixedClock, secret: str
) -> None:
    with Session(engine) as session:
        [(webhook, _)] = contacts.webhooks(session, "acme")
        assert webhook.public_only is False
    assert Sender(engine, settings(sink), clock).run_once().sent == 2
    assert len(receiver.received) == 1

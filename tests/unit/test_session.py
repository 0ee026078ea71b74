"""The session: facts in, one reply and one recorded decision out, faults as 4xx."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from osfmilter.events import EventRecord
from osfmilter.limits.rate import RateDenied, Reservation
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.model import ServerState, Stage
from osfmilter.policy import pipeline
from osfmilter.session import MilterSession, connection
from osfmilter.spool import Spool
from osfmilter.verdict import CONTINUE, Accept, Refused, TempFail, Verdict
from tests.fakes import FakeDirectory, FakeRecorder, FixedClock, MemoryLimiter, identity, services

REGISTERED = "192.0.2.10"


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(
        by_address={REGISTERED: identity()},
        by_login={"alice": identity("alice", plan="paid")},
    )


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
def session(directory: FakeDirectory, recorder: FakeRecorder) -> Iterator[MilterSession]:
    s = MilterSession(services(directory, recorder))
    s.connect(REGISTERED)
    s.hello("mail.example.com")
    yield s
    s.close()


def code(reply: Verdict) -> tuple[int, str] | None:
    """The reply's codes; None for an answer that goes on or accepts."""
    return (reply.code, reply.enhanced_code) if isinstance(reply, Refused) else None


def send(
    session: MilterSession, sender: str, rcpts: int, from_header: str, body: bytes = b"hi\r\n"
):
    assert session.mail(sender, [], login="", queue_id="") == CONTINUE
    replies = [session.rcpt(f"<r{i}@example.org>", queue_id="QID1") for i in range(rcpts)]
    session.header("From", from_header)
    session.header("Subject", "test")
    session.end_of_headers()
    body_reply = session.body(body)
    return replies, body_reply, session.end_of_message(queue_id="QID1")


def test_registered_known_sender_is_accepted_and_recorded(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    rcpt_replies, body, eom = send(session, "<a@example.com>", 3, "A <a@example.com>")
    assert rcpt_replies == [CONTINUE] * 3 and body == CONTINUE and isinstance(eom, Accept)
    [event] = recorder.records
    assert (event.action, event.reason, event.queue_id, event.rcpt_count) == (
        "accept",
        "accepted",
        "QID1",
        3,
    )
    assert event.header_from_domain == "example.com"
    assert event.size == len(b"From: A <a@example.com>\r\nSubject: test\r\n\r\nhi\r\n")


def test_unregistered_client_gets_550_and_one_event(
    directory: FakeDirectory, recorder: FakeRecorder
) -> None:
    session = MilterSession(services(directory, recorder))
    session.connect("198.51.100.1")
    assert code(session.mail("<a@example.com>", [], login="", queue_id="")) == (550, "5.7.1")
    [event] = recorder.records
    assert (event.action, event.reason, event.client_ip, event.stage) == (
        "reject",
        "relay_denied",
        "198.51.100.1",
        "mail",
    )


def test_ipv4_mapped_client_matches_its_ipv4_registration(
    directory: FakeDirectory, recorder: FakeRecorder
) -> None:
    session = MilterSession(services(directory, recorder))
    session.connect("::ffff:" + REGISTERED)
    assert session.mail("<a@example.com>", [], login="", queue_id="") == CONTINUE
    session.close()


def test_sasl_login_authorizes_any_address(
    directory: FakeDirectory, recorder: FakeRecorder
) -> None:
    session = MilterSession(services(directory, recorder))
    session.connect("203.0.113.5")
    assert session.mail("<a@example.com>", [], login="alice", queue_id="") == CONTINUE
    assert code(session.mail("<a@example.com>", [], login="mallory", queue_id="")) == (550, "5.7.1")
    # No identity carries over to the next transaction; an empty login is no login.
    assert session.mail("<a@example.com>", [], login="alice", queue_id="") == CONTINUE
    assert code(session.mail("<a@example.com>", [], login="", queue_id="")) == (550, "5.7.1")
    session.close()


def test_declared_size_over_the_limit_is_552(session: MilterSession) -> None:
    reply = session.mail("<a@example.com>", ["SIZE=52428801", "BODY=8BITMIME"], "", "")
    assert code(reply) == (552, "5.3.4")
    assert session.mail("<a@example.com>", ["size=52428800"], "", "") == CONTINUE


def test_streamed_size_over_the_limit_is_552(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    assert session.rcpt("<r@example.org>", "") == CONTINUE
    session.end_of_headers()
    chunk = b"x" * 65536
    sent, reply = 0, session.body(b"")
    while reply == CONTINUE and sent <= 52_428_800:
        reply = session.body(chunk)
        sent += len(chunk)
    assert code(reply) == (552, "5.3.4")
    assert sent == 52_428_800  # plus the blank line after the headers: one byte over
    assert recorder.records[-1].reason == "message_size"


def test_recipients_past_the_known_limit_get_452_and_one_event(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    replies, _, eom = send(session, "<a@example.com>", 53, "a@example.com")
    assert replies[:50] == [CONTINUE] * 50
    assert [code(r) for r in replies[50:]] == [(452, "4.5.3")] * 3
    assert isinstance(eom, Accept)
    assert [(e.reason, e.rcpt_count) for e in recorder.records] == [
        ("recipient_limit", 50),
        ("accepted", 50),
    ]


def test_unknown_envelope_sender_gets_five_recipients(session: MilterSession) -> None:
    replies, _, _ = send(session, "<a@other.example>", 6, "a@other.example")
    assert replies[:5] == [CONTINUE] * 5
    assert code(replies[5]) == (452, "4.5.3")


def test_unknown_header_from_rechecks_the_recipients_at_end_of_message(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    _, _, eom = send(session, "<a@example.com>", 6, "Spoof <ceo@other.example>")
    assert code(eom) == (452, "4.5.3")
    assert recorder.records[-1].header_from_domain == "other.example"


def test_second_unknown_from_header_makes_the_sender_unknown(session: MilterSession) -> None:
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    for i in range(6):
        assert session.rcpt(f"<r{i}@example.org>", "") == CONTINUE
    session.header("From", "a@example.com")
    session.header("From", "b@other.example")
    session.end_of_headers()
    assert code(session.end_of_message("Q")) == (452, "4.5.3")


def test_blocked_server_gets_554(directory: FakeDirectory, recorder: FakeRecorder) -> None:
    directory.by_address[REGISTERED] = identity(state=ServerState.ONVEILIG)
    session = MilterSession(services(directory, recorder))
    session.connect(REGISTERED)
    assert code(session.mail("<a@example.com>", [], "", "")) == (554, "5.7.1")


def test_database_down_at_mail_is_451_430(session: MilterSession, directory: FakeDirectory) -> None:
    directory.down = True
    reply = session.mail("<a@example.com>", [], "", "")
    assert code(reply) == (451, "4.3.0") and isinstance(reply, TempFail)


def test_accept_that_cannot_be_recorded_is_tempfailed(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    assert session.rcpt("<r@example.org>", "") == CONTINUE
    session.end_of_headers()
    recorder.down = True
    assert code(session.end_of_message("Q")) == (451, "4.3.0")


def test_unexpected_exception_is_451_430(session: MilterSession, directory: FakeDirectory) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError

    directory.find_identity = broken  # type: ignore[method-assign,assignment]
    assert code(session.mail("<a@example.com>", [], "", "")) == (451, "4.3.0")


def test_a_new_transaction_forgets_the_previous_one(session: MilterSession) -> None:
    send(session, "<a@example.com>", 50, "a@example.com")
    replies, _, eom = send(session, "<a@example.com>", 50, "a@example.com")
    assert replies == [CONTINUE] * 50 and isinstance(eom, Accept)


def test_forged_own_headers_are_removed_and_ours_added(session: MilterSession) -> None:
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    assert session.rcpt("<r@example.org>", "") == CONTINUE
    session.header("X-Osfmilter", "node=evil; virus=clean")
    session.header("X-Spam-Status", "No, score=-100")
    session.header("x-osfmilter", "forged again")
    session.end_of_headers()
    accepted = session.end_of_message("Q7")
    assert isinstance(accepted, Accept)
    changes = accepted.headers
    assert changes.remove == (("x-osfmilter", 2), ("X-Osfmilter", 1))
    assert changes.add == (("X-Osfmilter", "node=test-node; qid=Q7; virus=off; spam=-; spf=-"),)


def test_callbacks_after_a_refused_mail_repeat_the_refusal(
    directory: FakeDirectory, recorder: FakeRecorder
) -> None:
    session = MilterSession(services(directory, recorder))
    session.connect("198.51.100.1")
    refusal = session.mail("<a@example.com>", [], login="", queue_id="")
    assert code(refusal) == (550, "5.7.1")
    assert session.rcpt("<r@example.org>", "") == refusal
    session.header("From", "a@example.com")
    assert session.body(b"x") == refusal
    assert session.end_of_message("Q") == refusal
    assert len(recorder.records) == 1
    session.close()


@pytest.mark.parametrize(
    "from_header",
    [
        "news@example.com <evil@attacker.test>",  # an address where the name belongs
        "news@example.com, evil@attacker.test",  # two authors, one foreign
    ],
)
def test_every_address_of_a_from_header_must_be_known(
    session: MilterSession, from_header: str
) -> None:
    _, _, eom = send(session, "<a@example.com>", 6, from_header)
    assert code(eom) == (452, "4.5.3")


def test_undecodable_header_bytes_are_recorded_not_fatal(
    session: MilterSession, recorder: FakeRecorder
) -> None:
    raw_domain = b"ex\xe4mple.com".decode("utf-8", "surrogateescape")
    _, _, eom = send(session, "<a@example.com>", 1, f"a@{raw_domain}")
    assert isinstance(eom, Accept)  # one recipient: fine for an unknown sender too
    assert recorder.records[-1].header_from_domain == raw_domain


class SlowRecorder(FakeRecorder):
    """The accept waits this long for the database before its transaction runs."""

    def __init__(self, clock: FixedClock, wait: float) -> None:
        super().__init__()
        self.clock, self.wait = clock, wait

    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Any], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None:
        self.clock.advance(self.wait)
        return super().record_accept(record, charge, also, in_time)


@pytest.mark.parametrize(("wait", "accepted"), [(290.0, True), (299.5, False), (400.0, False)])
def test_an_accept_whose_database_wait_outlasts_the_mta_is_not_counted(
    directory: FakeDirectory,
    wait: float,
    accepted: bool,
) -> None:
    """The MTA stops waiting after content_timeout (300 s) and answers 4xx itself.

    The timeout used to be checked only before the accept's database wait.
    """
    clock = FixedClock()
    recorder = SlowRecorder(clock, wait)
    limiter = MemoryLimiter(clock)
    session = MilterSession(services(directory, recorder, clock=clock, limiter=limiter))
    session.connect(REGISTERED)
    _, _, eom = send(session, "<a@example.com>", 1, "a@example.com")
    session.close()
    if accepted:
        assert isinstance(eom, Accept) and limiter.counting("server:192.0.2.0/24") == 1
        return
    assert code(eom) == (451, "4.3.0")
    assert [r.reason for r in recorder.records] == ["internal_error"]
    assert recorder.volume == {} and limiter.counting("server:192.0.2.0/24") == 0


def test_a_spool_that_fails_to_close_after_the_accept_leaves_the_accept(
    directory: FakeDirectory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The accept is committed; its answer must stay an accept (review of 9e589c6)."""
    recorder = FakeRecorder()
    session = MilterSession(services(directory, recorder))
    session.connect(REGISTERED)

    def disk_full(self: Spool) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "close", disk_full)
    _, _, eom = send(session, "<a@example.com>", 1, "a@example.com")
    session.close()
    assert isinstance(eom, Accept)
    assert [r.reason for r in recorder.records] == ["accepted"]


def test_a_spool_write_failure_in_the_body_is_one_decision_at_once(
    directory: FakeDirectory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FixedClock()
    recorder, limiter = FakeRecorder(), MemoryLimiter(clock)
    session = MilterSession(services(directory, recorder, clock=clock, limiter=limiter))
    session.connect(REGISTERED)

    def disk_full(self: Spool, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "body", disk_full)
    _, body, eom = send(session, "<a@example.com>", 1, "a@example.com")
    assert code(body) == (451, "4.3.0") and code(eom) == (451, "4.3.0")
    assert [(r.stage, r.reason) for r in recorder.records] == [("body", "internal_error")]
    assert not any(limiter.slots.values())


@pytest.mark.parametrize(("age", "renewed"), [(100.0, False), (600.0, True)])
def test_a_reservation_that_could_expire_before_the_commit_is_renewed(
    directory: FakeDirectory,
    age: float,
    renewed: bool,
) -> None:
    """reservation_ttl 900 s: one 600 s old could expire in the 300 s the accept may wait."""

    class CountingLimiter(MemoryLimiter):
        renewals = 0

        def renew(self, reservation: Reservation) -> Reservation | RateDenied:
            self.renewals += 1
            return super().renew(reservation)

    clock = FixedClock()
    limiter = CountingLimiter(clock)
    session = MilterSession(services(directory, FakeRecorder(), clock=clock, limiter=limiter))
    session.connect(REGISTERED)
    assert session.mail("<a@example.com>", [], login="", queue_id="") == CONTINUE
    assert session.rcpt("<r@example.org>", queue_id="Q") == CONTINUE
    clock.advance(age)
    session.header("From", "a@example.com")
    session.end_of_headers()
    assert session.body(b"hi\r\n") == CONTINUE
    assert isinstance(session.end_of_message("Q"), Accept)
    assert limiter.renewals == (1 if renewed else 0)
    assert limiter.counting("server:192.0.2.0/24") == 1


def test_a_limiter_bug_after_the_accept_leaves_the_accept(directory: FakeDirectory) -> None:
    """A limiter that commits after the database (Redis): the message is already counted."""

    class BrokenCommit(MemoryLimiter):
        def commit(self, reservation: Reservation) -> None:
            raise RuntimeError("a bug in the limiter")

    recorder = FakeRecorder()
    clock = FixedClock()
    session = MilterSession(services(directory, recorder, clock=clock, limiter=BrokenCommit(clock)))
    session.connect(REGISTERED)
    _, _, eom = send(session, "<a@example.com>", 1, "a@example.com")
    session.close()
    assert isinstance(eom, Accept) and [r.reason for r in recorder.records] == ["accepted"]


def test_an_end_of_message_that_nothing_committed_is_451_not_an_accept(
    session: MilterSession, recorder: FakeRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pipeline whose last step forgot to commit: no accept goes out uncounted.
    eom = tuple(step for step in pipeline.PIPELINE[Stage.EOM] if step.name != "volume")
    monkeypatch.setattr(connection, "PIPELINE", {**pipeline.PIPELINE, Stage.EOM: eom})
    _, _, reply = send(session, "<a@example.com>", 1, "a@example.com")
    assert code(reply) == (451, "4.3.0")
    assert [event.action for event in recorder.records] == ["tempfail"]

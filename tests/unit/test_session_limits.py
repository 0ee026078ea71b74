"""Rate and volume limits as the session applies them, on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from osfmilter.config import Config, Mode, config_from_dict
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation.transitions import Standing
from osfmilter.session import MilterSession
from osfmilter.verdict import CONTINUE, Accept, Refused
from tests.fakes import (
    FakeDirectory,
    FakeRecorder,
    FixedClock,
    MemoryLimiter,
    MemoryReputation,
    identity,
    services,
)

SERVER = "192.0.2.10"
LABEL = "server:192.0.2.0/24"


class Relay:
    """A session factory over shared fakes: many connections, one window."""

    def __init__(self, ident=None, config: Config | None = None) -> None:
        self.directory = FakeDirectory(by_address={SERVER: ident or identity()})
        self.recorder = FakeRecorder()
        self.clock = FixedClock()
        self.limiter = MemoryLimiter(self.clock)
        self.reputation = MemoryReputation(self.clock)
        identity_ = self.directory.by_address[SERVER]
        if identity_.state is not ServerState.VEILIG:
            now = self.clock.now()
            self.reputation.standings[(identity_.kind, identity_.id)] = Standing(
                identity_.state, now, last_incident_at=now
            )
        self.services = services(
            self.directory,
            self.recorder,
            config,
            self.clock,
            self.limiter,
            reputation=self.reputation,
        )

    def session(self) -> MilterSession:
        session = MilterSession(self.services)
        session.connect(SERVER)
        return session

    def send(
        self,
        sender: str = "a@example.com",
        from_header: str = "a@example.com",
        rcpts: int = 1,
        body: bytes = b"hello\r\n",
    ) -> Refused | None:
        """One message on a new connection; the first refusal, or None when accepted."""
        session = self.session()
        try:
            if isinstance(reply := session.mail(f"<{sender}>", [], "", ""), Refused):
                return reply
            for i in range(rcpts):
                if isinstance(reply := session.rcpt(f"<r{i}@example.org>", "Q"), Refused):
                    return reply
            session.header("From", from_header)
            session.end_of_headers()
            if isinstance(reply := session.body(body), Refused):
                return reply
            reply = session.end_of_message("Q")
            assert isinstance(reply, Refused | Accept)
            return reply if isinstance(reply, Refused) else None
        finally:
            session.close()


def codes(reply: Refused | None) -> tuple[int, str] | None:
    return None if reply is None else (reply.code, reply.enhanced_code)


@pytest.fixture
def relay() -> Relay:
    return Relay()


def test_101st_known_message_in_five_minutes_is_451_and_says_when_to_retry(relay: Relay) -> None:
    assert [relay.send() for _ in range(100)] == [None] * 100
    relay.clock.advance(60)
    reply = relay.send()
    assert codes(reply) == (451, "4.7.1")
    assert reply is not None and "at most 100 per 5 minutes" in reply.text
    assert "retry in 240 seconds" in reply.text
    assert relay.recorder.records[-1].reason == "rate_limit"
    relay.clock.advance(240)
    assert relay.send() is None


def test_11th_unknown_sender_message_is_451(relay: Relay) -> None:
    unknown: dict[str, Any] = {"sender": "x@other.example", "from_header": "x@other.example"}
    assert [relay.send(**unknown) for _ in range(10)] == [None] * 10
    reply = relay.send(**unknown)
    assert codes(reply) == (451, "4.7.1") and reply and "unknown senders" in reply.text
    assert relay.send() is None  # known-sender mail still flows


def test_unknown_header_from_counts_in_the_unknown_window_at_end_of_message(relay: Relay) -> None:
    spoof: dict[str, Any] = {"from_header": "ceo@other.example"}
    assert [relay.send(**spoof) for _ in range(10)] == [None] * 10
    assert codes(relay.send(**spoof)) == (451, "4.7.1")
    assert relay.limiter.counting(LABEL, "unknown") == 10


def test_verdacht_server_gets_ten_per_window_whatever_the_plan() -> None:
    relay = Relay(identity(plan="paid", state=ServerState.VERDACHT))
    assert [relay.send() for _ in range(10)] == [None] * 10
    reply = relay.send()
    assert codes(reply) == (451, "4.7.1") and reply and "verdacht" in reply.text


def test_paid_plan_admits_a_thousand() -> None:
    relay = Relay(identity(plan="paid"))
    assert all(relay.send() is None for _ in range(1000))
    assert codes(relay.send()) == (451, "4.7.1")


def test_refused_and_aborted_messages_give_their_slot_back(relay: Relay) -> None:
    config_limit = 100
    # Refused at end of message (too many recipients for the From: header).
    for _ in range(30):
        assert codes(relay.send(from_header="x@other.example", rcpts=6)) == (452, "4.5.3")
    # Aborted after RCPT (the client gave up).
    for _ in range(30):
        session = relay.session()
        assert session.mail("<a@example.com>", [], "", "") == CONTINUE
        assert session.rcpt("<r@example.org>", "") == CONTINUE
        session.abort()
        session.close()
    assert relay.limiter.counting(LABEL) == 0
    assert all(relay.send() is None for _ in range(config_limit))


def test_a_message_tempfailed_five_times_counts_once(relay: Relay) -> None:
    relay.recorder.down = True
    for _ in range(5):
        assert codes(relay.send()) == (451, "4.3.0")
    relay.recorder.down = False
    assert relay.send() is None
    assert relay.limiter.counting(LABEL) == 1


def test_rate_backend_down_is_451_430(relay: Relay) -> None:
    relay.limiter.down = True
    assert codes(relay.send()) == (451, "4.3.0")


# Monthly volume ----------------------------------------------------------------------

MB = 1_000_000


def small_config() -> Config:
    """1 MB base allowance so the arithmetic stays readable."""
    return config_from_dict({"plans": {"free": {"monthly_volume_base": 1 * MB}}})


def message_of(size: int) -> bytes:
    header = len(b"From: a@example.com\r\n\r\n")
    return b"x" * (size - header)


def test_volume_is_size_times_recipients_and_stops_at_the_allowance() -> None:
    relay = Relay(config=small_config())
    assert relay.send(rcpts=4, body=message_of(200_000)) is None  # 800 kB
    reply = relay.send(rcpts=2, body=message_of(200_000))  # would be 1.2 MB
    assert codes(reply) == (451, "4.7.1") and reply and "monthly volume" in reply.text
    assert relay.send(rcpts=1, body=message_of(200_000)) is None  # exactly 1 MB
    assert relay.recorder.records[-2].reason == "volume_limit"
    # The refusal offers the month's 100 % notice (the store writes it once a month).
    [notice] = relay.recorder.notices
    assert notice.type == "volume.100" and notice.dedup_key
    assert (notice.details["used_bytes"], notice.details["allowance_bytes"]) == (800_000, MB)


def test_inbound_volume_earns_twice_its_size() -> None:
    relay = Relay(config=small_config())
    relay.recorder.record_inbound("2026-11", {(7, "example.com"): 100_000})
    # 1 MB + 2 × 100 kB = 1.2 MB
    assert relay.send(rcpts=6, body=message_of(200_000)) is None
    assert codes(relay.send(body=message_of(1000))) == (451, "4.7.1")


def test_unknown_senders_share_one_bucket_with_the_base_allowance_only() -> None:
    relay = Relay(config=small_config())
    relay.recorder.record_inbound("2026-11", {(7, "example.com"): 10 * MB})
    unknown: dict[str, Any] = {"sender": "x@other.example", "from_header": "x@other.example"}
    assert relay.send(rcpts=4, body=message_of(200_000), **unknown) is None
    assert codes(relay.send(body=message_of(300_000), **unknown)) == (451, "4.7.1")
    assert relay.send(body=message_of(1000)) is None  # the known domain has its own


def test_month_rollover_resets_the_volume() -> None:
    relay = Relay(config=small_config())
    relay.clock.current = relay.clock.current.replace(day=30, hour=23, minute=59)
    assert relay.send(rcpts=5, body=message_of(200_000)) is None
    assert codes(relay.send(body=message_of(1000))) == (451, "4.7.1")
    relay.clock.advance(120)  # 2026-12-01 00:01
    assert relay.send(rcpts=5, body=message_of(200_000)) is None


def test_paid_volume_is_counted_but_unlimited() -> None:
    relay = Relay(identity(plan="paid"), config=small_config())
    for _ in range(3):
        assert relay.send(rcpts=5, body=message_of(200_000)) is None
    assert relay.recorder.volume[("2026-11", "outbound", 7, "example.com")] == 3 * MB


# Inbound mode -------------------------------------------------------------------------


@pytest.fixture
def inbound() -> Iterator[Relay]:
    relay = Relay(config=Config(mode=Mode.INBOUND))
    yield relay


def test_inbound_mode_counts_per_scanned_recipient_domain_and_refuses_nothing(
    inbound: Relay,
) -> None:
    session = MilterSession(inbound.services)
    session.connect("203.0.113.99")  # not registered: inbound mail comes from anywhere
    assert session.mail("<x@sender.example>", ["SIZE=999999999999"], "", "") == CONTINUE
    for rcpt in ("<a@example.com>", "<b@mail.example.com>", "<c@elsewhere.example>"):
        assert session.rcpt(rcpt, "Q") == CONTINUE
    session.header("From", "x@sender.example")
    session.end_of_headers()
    assert session.body(b"x" * 100) == CONTINUE
    assert isinstance(session.end_of_message("Q"), Accept)
    size = len(b"From: x@sender.example\r\n\r\n") + 100
    assert inbound.recorder.volume == {("2026-11", "inbound", 7, "example.com"): 2 * size}
    session.close()


def test_inbound_mode_accepts_when_the_database_is_down(inbound: Relay) -> None:
    inbound.recorder.down = True
    session = MilterSession(inbound.services)
    session.connect("203.0.113.99")
    assert session.mail("<x@sender.example>", [], "", "") == CONTINUE
    assert session.rcpt("<a@example.com>", "Q") == CONTINUE
    session.end_of_headers()
    assert isinstance(session.end_of_message("Q"), Accept)
    session.close()


# The reputation on the mail path ----------------------------------------------------


def test_21_limit_refusals_within_an_hour_make_the_server_verdacht(relay: Relay) -> None:
    unknown: dict[str, Any] = {"sender": "x@other.example", "from_header": "x@other.example"}
    for _ in range(10):
        assert relay.send(**unknown) is None
    for _ in range(21):
        assert codes(relay.send(**unknown)) == (451, "4.7.1")
    assert relay.reputation.state(IdentityKind.SERVER, 1) is ServerState.VERDACHT
    assert "usage" in relay.reputation.history[-1].reason


def test_a_verdacht_server_is_veilig_again_48_hours_after_its_last_incident() -> None:
    relay = Relay(identity(state=ServerState.VERDACHT))
    relay.clock.advance(47 * 3600)
    assert [relay.send() for _ in range(10)] == [None] * 10
    assert codes(relay.send()) == (451, "4.7.1")  # still the 10-per-window limit
    relay.clock.advance(3600 + 1)
    assert [relay.send() for _ in range(50)] == [None] * 50  # plan limits again
    [recovery] = relay.reputation.history
    assert recovery.new is ServerState.VEILIG
    assert recovery.at == relay.reputation.standings[(IdentityKind.SERVER, 1)].changed_at


def test_the_verdacht_limit_does_not_prolong_verdacht() -> None:
    relay = Relay(identity(state=ServerState.VERDACHT))
    for _ in range(10):
        relay.send()
    for _ in range(40):
        assert codes(relay.send()) == (451, "4.7.1")
    assert relay.reputation.history == []  # no usage incident from its own limit


# Another customer's domain ------------------------------------------------------------


def test_another_customers_domain_is_refused_at_mail_and_at_the_end() -> None:
    relay = Relay()
    relay.directory.other_domains["other.example"] = 8
    envelope = relay.send(sender="x@other.example", from_header="x@other.example")
    assert codes(envelope) == (550, "5.7.1")
    header = relay.send(sender="a@example.com", from_header="Other <x@mail.other.example>")
    assert codes(header) == (550, "5.7.1")
    assert header is not None and "From: domain mail.other.example" in header.text
    refused = [(e.stage, e.reason, e.checks.split(",")[-1]) for e in relay.recorder.records]
    assert refused == [
        ("mail", "foreign_sender", "sender_domain"),
        ("eom", "foreign_from", "from_domain"),
    ]
    # Each refusal offers the customer's notice; the store writes the first of the day.
    notices = relay.recorder.notices
    assert [n.type for n in notices] == ["refusal.foreign_domain"] * 2
    assert notices[0].dedup_key == notices[1].dedup_key
    assert notices[0].details["domain"] == "other.example"
    assert notices[1].details["where"] == "From: header"
    # Nobody's domain is still an unknown sender, accepted with the lower limits.
    assert relay.send(sender="x@nobody.example", from_header="x@nobody.example") is None


def test_21_foreign_domain_refusals_within_an_hour_make_the_server_verdacht() -> None:
    relay = Relay()
    relay.directory.other_domains["other.example"] = 8
    for _ in range(21):
        assert codes(relay.send(sender="x@other.example")) == (550, "5.7.1")
    assert relay.reputation.state(IdentityKind.SERVER, 1) is ServerState.VERDACHT
    assert "usage" in relay.reputation.history[-1].reason


def test_with_refuse_foreign_off_another_customers_domain_is_an_unknown_sender() -> None:
    relay = Relay(config=config_from_dict({"domains": {"refuse_foreign": False}}))
    relay.directory.other_domains["other.example"] = 8
    for _ in range(10):
        assert relay.send(sender="x@other.example", from_header="x@other.example") is None
    assert codes(relay.send(sender="x@other.example", from_header="x@other.example")) == (
        451,
        "4.7.1",
    )  # the unknown senders' window of 10


def test_an_author_past_the_parsed_part_of_a_long_from_header_is_judged_too() -> None:
    relay = Relay()
    relay.directory.other_domains["other.example"] = 8
    padding = '"' + "x" * 5000 + '" <a@example.com>'
    refused = relay.send(from_header=f"{padding}, b@other.example")
    assert codes(refused) == (550, "5.7.1")
    assert refused is not None and "From: domain other.example" in refused.text
    # Wholly the customer's own, but not wholly read: an unknown sender, not refused.
    assert relay.send(from_header=padding) is None
    [accepted] = [e for e in relay.recorder.records if e.reason == "accepted"]
    assert accepted.header_from_domain == ""  # the first author could not be read

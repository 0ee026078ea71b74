"""rate: a slot in the identity's windows at MAIL FROM, held until the end."""

from __future__ import annotations

from osfmilter.model import ServerState
from osfmilter.policy.steps.rate_window import rate_window
from osfmilter.replies import RateLimited, reply_for
from tests.fakes import identity
from tests.unit.policy.builders import world

LABEL = "server:192.0.2.0/24"


def test_a_known_sender_takes_one_slot_in_the_all_mail_window() -> None:
    w = world()
    assert rate_window.check(w.context) is None
    [reservation] = w.tx.reservations
    assert [b.name for b in reservation.buckets] == ["all"]
    assert not w.tx.counted_as_unknown


def test_an_unknown_sender_also_counts_in_the_unknown_window() -> None:
    w = world(sender="a@other.example")
    assert rate_window.check(w.context) is None
    [reservation] = w.tx.reservations
    assert [b.name for b in reservation.buckets] == ["all", "unknown"]
    assert w.tx.counted_as_unknown


def test_a_full_window_is_451_with_when_to_retry() -> None:
    w = world()
    for _ in range(100):  # the free plan's rate_known
        assert rate_window.check(w.context) is None
    refusal = rate_window.check(w.context)
    assert isinstance(refusal, RateLimited) and w.tx.rate_denied is not None
    assert len(w.tx.reservations) == 100  # the denied one holds nothing
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (451, "4.7.1")
    assert "at most 100 per 5 minutes for all mail" in reply.text
    assert "retry in 60 seconds" in reply.text  # only pending slots fill it


def test_the_unknown_senders_window_is_named() -> None:
    w = world(sender="a@other.example")
    for _ in range(10):
        assert rate_window.check(w.context) is None
    refusal = rate_window.check(w.context)
    assert refusal is not None
    assert "for mail from unknown senders" in reply_for(refusal).text


def test_a_suspicious_server_gets_its_low_limit() -> None:
    w = world(identity(state=ServerState.VERDACHT))
    for _ in range(10):
        assert rate_window.check(w.context) is None
    refusal = rate_window.check(w.context)
    assert refusal is not None
    assert "a server in state verdacht (suspicious)" in reply_for(refusal).text
    assert w.limiter.counting(LABEL) == 0  # reserved, not counted

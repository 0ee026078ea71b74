"""unknown_sender_window: the From: header made the sender unknown after MAIL."""

from __future__ import annotations

from osfmilter.policy import engine
from osfmilter.policy.steps.rate_window import rate_window
from osfmilter.policy.steps.unknown_sender_window import unknown_sender_window
from osfmilter.replies import reply_for
from tests.unit.policy.builders import World, world


def mailed(header_from: str) -> World:
    w = world()
    assert rate_window.check(w.context) is None  # reserved by the known envelope
    w.tx.header_from_domains.append(header_from)
    return w


def test_it_applies_only_when_the_header_made_the_sender_unknown() -> None:
    assert unknown_sender_window.when is not None
    assert not unknown_sender_window.when(mailed("example.com").context)
    assert unknown_sender_window.when(mailed("other.example").context)
    counted = world(sender="a@other.example")
    assert rate_window.check(counted.context) is None
    counted.tx.header_from_domains.append("other.example")
    assert not unknown_sender_window.when(counted.context)  # counted as unknown at MAIL


def test_it_reserves_the_unknown_window_only() -> None:
    w = mailed("other.example")
    assert unknown_sender_window.check(w.context) is None
    assert [[b.name for b in r.buckets] for r in w.tx.reservations] == [["all"], ["unknown"]]


def test_a_full_unknown_window_refuses_at_the_end() -> None:
    w = mailed("other.example")
    for _ in range(10):
        assert unknown_sender_window.check(w.context) is None
    refusal = unknown_sender_window.check(w.context)
    assert refusal is not None
    assert "mail from unknown senders" in reply_for(refusal).text


def test_the_engine_skips_it_when_it_does_not_apply() -> None:
    w = mailed("example.com")
    outcome = engine.run((unknown_sender_window,), w.context)
    assert outcome.passed == () and "unknown_sender_window" not in w.tx.checks

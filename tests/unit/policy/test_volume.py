"""volume: the accept commits within the month's allowance, or nothing counts."""

from __future__ import annotations

from osfmilter.errors import TooLate
from osfmilter.limits.volume import VolumeDenied
from osfmilter.policy.steps.volume import within_volume
from osfmilter.replies import ContentTimedOut, reply_for
from tests.unit.policy.builders import World, world


def message(header_from: str, rcpts: int = 2) -> World:
    w = world()
    assert w.tx.spool is not None
    w.tx.spool.end_of_headers()
    w.tx.spool.body(b"x" * 98)
    w.tx.recipients.extend(f"r{i}@example.org" for i in range(rcpts))
    w.tx.header_from_domains.append(header_from)
    return w


def test_the_charge_is_size_times_recipients_on_the_known_domain() -> None:
    w = message("mail.example.com")
    assert within_volume.check(w.context) is None
    [charge] = w.accepting.charges
    assert (charge.customer_id, charge.domain, charge.month) == (7, "example.com", "2026-11")
    assert charge.volume == 200 and charge.limited  # the free plan is limited


def test_an_unknown_sender_counts_in_the_customers_unknown_bucket() -> None:
    w = message("other.example")
    w.accepting.denied = VolumeDenied(used=990, allowance=1000)
    refusal = within_volume.check(w.context)
    assert refusal is not None and w.accepting.charges[0].domain == ""
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (451, "4.7.1")
    assert "for unknown senders: 990 of 1000 bytes" in reply.text


def test_an_accept_too_late_for_the_mta_is_a_content_timeout() -> None:
    w = message("example.com")
    w.accepting.error = TooLate("the MTA stopped waiting")
    assert isinstance(within_volume.check(w.context), ContentTimedOut)

"""header_recipients: the From: header may make the sender unknown after RCPT."""

from __future__ import annotations

from osfmilter.policy.steps.header_recipients import recipients_for_header_sender
from osfmilter.replies import reply_for
from tests.unit.policy.builders import world


def test_header_from_of_an_unknown_sender_rechecks_recipients() -> None:
    w = world()
    w.tx.recipients.extend(f"r{i}@example.org" for i in range(6))
    w.tx.header_from_domains.append("example.com")
    assert recipients_for_header_sender.check(w.context) is None
    w.tx.header_from_domains.append("other.example")  # a second author, unknown
    refusal = recipients_for_header_sender.check(w.context)
    assert refusal is not None
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (452, "4.5.3")
    assert "an unknown sender (at most 5 per message)" in reply.text


def test_the_known_limit_is_inclusive() -> None:
    w = world()
    w.tx.recipients.extend(f"r{i}@example.org" for i in range(50))
    assert recipients_for_header_sender.check(w.context) is None
    w.tx.recipients.append("one-more@example.org")
    assert recipients_for_header_sender.check(w.context) is not None

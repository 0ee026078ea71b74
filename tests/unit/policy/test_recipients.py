"""recipients: one more RCPT fits the limit of the envelope sender's class."""

from __future__ import annotations

import pytest

from osfmilter.policy.steps.recipients import recipients_within_limit
from osfmilter.replies import reply_for
from osfmilter.verdict import TempFail
from tests.fakes import identity
from tests.unit.policy.builders import world


@pytest.mark.parametrize(
    ("plan", "sender", "accepted", "refused"),
    [
        ("free", "a@example.com", 49, False),
        ("free", "a@example.com", 50, True),
        ("free", "a@mail.example.com", 50, True),
        ("free", "a@other.example", 4, False),
        ("free", "a@other.example", 5, True),
        ("paid", "a@example.com", 499, False),
        ("paid", "a@example.com", 500, True),
        ("paid", "a@other.example", 499, False),
        ("paid", "a@other.example", 500, True),
    ],
)
def test_recipient_limits(plan: str, sender: str, accepted: int, refused: bool) -> None:
    w = world(identity(plan=plan), sender=sender)
    w.tx.recipients.extend(f"r{i}@example.org" for i in range(accepted))
    refusal = recipients_within_limit.check(w.context)
    assert (refusal is not None) is refused
    if refusal:
        reply = reply_for(refusal)
        assert isinstance(reply, TempFail)
        assert (reply.code, reply.enhanced_code) == (452, "4.5.3")
        known = sender.endswith("example.com")
        assert ("a known sender" if known else "an unknown sender") in reply.text

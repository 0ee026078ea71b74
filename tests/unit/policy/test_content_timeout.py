"""content_timeout: no accept once the MTA may have stopped waiting."""

from __future__ import annotations

from osfmilter.policy.steps.content_timeout import content_timeout
from osfmilter.replies import ContentTimedOut, reply_for
from tests.unit.policy.builders import world


def test_in_time_passes_and_late_is_451_430() -> None:
    w = world()
    w.tx.content_answered = w.clock.monotonic()
    w.clock.advance(298.9)  # content_timeout 300 s less the 1 s margin
    assert content_timeout.check(w.context) is None
    w.clock.advance(0.2)
    refusal = content_timeout.check(w.context)
    assert isinstance(refusal, ContentTimedOut) and round(refusal.seconds, 6) == 299.1
    assert refusal.reason == "internal_error"
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (451, "4.3.0")

"""streamed_size: the bytes received so far against the plan."""

from __future__ import annotations

from osfmilter.policy.steps.streamed_size import streamed_size
from osfmilter.replies import reply_for
from tests.unit.policy.builders import world


def test_streamed_size_over_the_limit_is_552() -> None:
    w = world()
    assert w.tx.spool is not None
    w.tx.spool.end_of_headers()  # 2 bytes: the blank line
    w.tx.spool.body(b"x" * (52_428_800 - 2))
    assert streamed_size.check(w.context) is None
    w.tx.spool.body(b"x")
    refusal = streamed_size.check(w.context)
    assert refusal is not None
    assert (reply_for(refusal).code, reply_for(refusal).enhanced_code) == (552, "5.3.4")
    w.tx.spool.close()

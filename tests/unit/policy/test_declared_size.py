"""declared_size: the SIZE= of MAIL FROM against the plan."""

from __future__ import annotations

import pytest

from osfmilter.policy.steps.declared_size import declared_size
from osfmilter.replies import reply_for
from tests.unit.policy.builders import world


@pytest.mark.parametrize(
    ("size", "refused"), [(None, False), (52_428_800, False), (52_428_801, True)]
)
def test_declared_size_limit(size: int | None, refused: bool) -> None:
    refusal = declared_size.check(world(declared_size=size).context)
    assert (refusal is not None) is refused
    if refusal:
        reply = reply_for(refusal)
        assert (reply.code, reply.enhanced_code) == (552, "5.3.4")
        assert "52428801" in reply.text and "52428800" in reply.text

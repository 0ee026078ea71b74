"""spam: a score at or over the plan's reject score is refused for good."""

from __future__ import annotations

import pytest

from osfmilter.config import config_from_dict
from osfmilter.policy.steps.spam import not_spam
from osfmilter.replies import reply_for
from tests.fakes import identity
from tests.unit.policy.builders import report, world


@pytest.mark.parametrize(("score", "refused"), [(9.9, False), (10.0, True), (-3.0, False)])
def test_the_default_reject_score(score: float, refused: bool) -> None:
    w = world()
    w.tx.scan = report(score=score)
    refusal = not_spam.check(w.context)
    assert (refusal is not None) is refused
    if refusal:
        reply = reply_for(refusal)
        assert (reply.code, reply.enhanced_code) == (550, "5.7.1")
        assert "score 10, limit 10" in reply.text


def test_a_plan_threshold_replaces_the_default() -> None:
    config = config_from_dict({"spam": {"plan_reject_scores": {"paid": 20}}})
    w = world(identity(plan="paid"), config=config)
    w.tx.scan = report(score=15.0)
    assert not_spam.check(w.context) is None


def test_no_score_passes() -> None:
    w = world()
    w.tx.scan = report(failed=("spamassassin",))
    assert not_spam.check(w.context) is None

from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import SpamScore


@step("spam")
def not_spam(context: Context) -> SpamScore | None:
    """The spam score is below the plan's reject score."""
    spam = context.tx.scan.spam
    threshold = context.config.spam.reject_score_for(context.identity.plan)
    if spam is not None and spam.score is not None and spam.score >= threshold:
        return SpamScore(spam.score, threshold)
    return None

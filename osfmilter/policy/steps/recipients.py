from __future__ import annotations

from osfmilter.config import PlanLimits
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import TooManyRecipients


def recipient_limit(limits: PlanLimits, known: bool) -> int:
    return limits.max_recipients_known if known else limits.max_recipients_unknown


@step("recipients")
def recipients_within_limit(context: Context) -> TooManyRecipients | None:
    """One more recipient fits the limit of a known (or unknown) envelope sender."""
    known = context.tx.envelope_sender_known()
    limit = recipient_limit(context.tx.limits, known)
    if len(context.tx.recipients) >= limit:
        return TooManyRecipients(limit, known)
    return None

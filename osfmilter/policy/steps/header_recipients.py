from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.policy.steps.recipients import recipient_limit
from osfmilter.replies import TooManyRecipients


@step("header_recipients")
def recipients_for_header_sender(context: Context) -> TooManyRecipients | None:
    """The recipients fit the limit of the sender the From: header names.

    RCPT time trusted the envelope; the From: header may turn the sender unknown.
    """
    known = context.tx.header_sender_known()
    limit = recipient_limit(context.tx.limits, known)
    if len(context.tx.recipients) > limit:
        return TooManyRecipients(limit, known)
    return None

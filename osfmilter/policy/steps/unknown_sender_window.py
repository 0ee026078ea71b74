from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.policy.steps.rate_window import UNKNOWN_SENDERS, rate_buckets, reserve
from osfmilter.replies import RateLimited


def _header_made_it_unknown(context: Context) -> bool:
    return not context.tx.counted_as_unknown and not context.tx.header_sender_known()


@step("unknown_sender_window", when=_header_made_it_unknown)
def unknown_sender_window(context: Context) -> RateLimited | None:
    """A slot in the unknown senders' window too, when only the From: header is unknown.

    MAIL FROM reserved by the envelope sender; the header says unknown
    sender, so the message must also fit the unknown senders' window.
    """
    tx = context.tx
    buckets = [
        b
        for b in rate_buckets(tx.limits, context.identity.state, False)
        if b.name == UNKNOWN_SENDERS
    ]
    return reserve(context, buckets)

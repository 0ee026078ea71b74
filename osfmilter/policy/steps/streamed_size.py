from __future__ import annotations

from osfmilter.config import PlanLimits
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import MessageTooLarge


def too_large(size: int, limits: PlanLimits) -> MessageTooLarge | None:
    """The plan's message size, for a declared or a received size."""
    if size > limits.max_message_size:
        return MessageTooLarge(size, limits.max_message_size)
    return None


@step("streamed_size")
def streamed_size(context: Context) -> MessageTooLarge | None:
    """The bytes received so far, headers included, are within the plan's message size."""
    return too_large(context.tx.size, context.tx.limits)

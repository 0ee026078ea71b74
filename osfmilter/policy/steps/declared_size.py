from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.policy.steps.streamed_size import too_large
from osfmilter.replies import MessageTooLarge


@step("declared_size")
def declared_size(context: Context) -> MessageTooLarge | None:
    """The ESMTP SIZE= of MAIL FROM, if given, is within the plan's message size."""
    size = context.tx.envelope.declared_size
    return None if size is None else too_large(size, context.tx.limits)

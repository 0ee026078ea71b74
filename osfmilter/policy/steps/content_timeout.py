from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import ContentTimedOut


@step("content_timeout")
def content_timeout(context: Context) -> ContentTimedOut | None:
    """The MTA is still waiting ([milter] content_timeout, less a margin for the commit).

    If this process was frozen, swapping or waiting for the database, the
    MTA has answered the client 4xx itself: the message will come again,
    so this one must not count.
    """
    if not context.in_time():
        return ContentTimedOut(context.content_elapsed())
    return None

from __future__ import annotations

from osfmilter.model import ServerState
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import Blocked


@step("blocked")
def not_blocked(context: Context) -> Blocked | None:
    """The sender identity is not in state onveilig (unsafe)."""
    identity = context.identity
    if identity.state is ServerState.ONVEILIG:
        return Blocked(identity.name, context.config.replies.contact)
    return None

from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import RelayDenied


@step("relay")
def relay_permitted(context: Context) -> RelayDenied | None:
    """The client is a registered server, or logged in with a registered SASL account."""
    if context.tx.identity is None:
        return RelayDenied(context.client, context.config.replies.register_hint)
    return None

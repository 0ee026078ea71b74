from __future__ import annotations

from osfmilter.limits.rate import Reservation
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.policy.steps.rate_window import admitted
from osfmilter.replies import RateLimited


@step("rate_renewal")
def reservations_current(context: Context) -> RateLimited | None:
    """A reservation that may expire before the accept commits is admitted again, like new.

    MAIL to the end of message may take longer than [rates]
    reservation_ttl; by then the slots may have been pruned and given to
    other messages, and counting this one anyway could pass the limit. A
    denied renewal keeps the old reservation on the transaction, so that
    giving the transaction up releases whatever is left of it.
    """
    tx = context.tx
    # The accept commits within content_timeout of now or not at all.
    horizon = context.ports.clock.now().timestamp() + context.config.milter.content_timeout
    for index, reservation in enumerate(tx.reservations):
        if not reservation.due_for_renewal(horizon):
            continue
        outcome = context.ports.rate.renew(reservation)
        if isinstance(outcome, Reservation):
            tx.reservations[index] = outcome
        elif (refusal := admitted(context, outcome)) is not None:
            return refusal
    return None

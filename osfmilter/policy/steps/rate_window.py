from __future__ import annotations

from collections.abc import Sequence

from osfmilter.config import PlanLimits
from osfmilter.limits.rate import Bucket, RateDenied, Reservation
from osfmilter.model import ServerState
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import RateLimited

ALL_MAIL = "all"
UNKNOWN_SENDERS = "unknown"


def rate_buckets(limits: PlanLimits, state: ServerState, known: bool) -> tuple[Bucket, ...]:
    """The windows a message counts in: all of the identity's mail, and unknown senders'."""
    everything = limits.rate_suspicious if state is ServerState.VERDACHT else limits.rate_known
    buckets: tuple[Bucket, ...] = (Bucket(ALL_MAIL, everything),)
    if not known:
        buckets += (Bucket(UNKNOWN_SENDERS, limits.rate_unknown),)
    return buckets


def admitted(context: Context, outcome: Reservation | RateDenied) -> RateLimited | None:
    """The refusal for a denied admission, which is noted on the transaction."""
    if not isinstance(outcome, RateDenied):
        return None
    context.tx.rate_denied = outcome
    identity = context.identity
    if outcome.bucket == UNKNOWN_SENDERS:
        what = "mail from unknown senders"
    elif identity.state is ServerState.VERDACHT:
        what = "a server in state verdacht (suspicious)"
    else:
        what = "all mail"
    window = context.config.rates.window
    return RateLimited(identity.name, outcome.limit, window, what, outcome.retry_after)


def reserve(context: Context, buckets: Sequence[Bucket]) -> RateLimited | None:
    outcome = context.ports.rate.reserve(context.identity.label, buckets)
    if isinstance(outcome, Reservation):
        context.tx.reservations.append(outcome)
    return admitted(context, outcome)


@step("rate")
def rate_window(context: Context) -> RateLimited | None:
    """A slot in the identity's 5-minute windows (all mail; unknown senders'), held till the end."""
    tx = context.tx
    known = tx.envelope_sender_known()
    tx.counted_as_unknown = not known
    return reserve(context, rate_buckets(tx.limits, context.identity.state, known))

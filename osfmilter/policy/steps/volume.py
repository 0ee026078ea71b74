from __future__ import annotations

from osfmilter.errors import TooLate
from osfmilter.limits.volume import VolumeCharge, month_of
from osfmilter.model import matching_domain
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import ContentTimedOut, VolumeExhausted


def volume_charge(context: Context) -> VolumeCharge:
    """Size × recipients, on the scanned domain the sender is known by (else the unknown bucket)."""
    tx, identity = context.tx, context.identity
    domain = ""
    if tx.header_sender_known():
        domain = matching_domain(tx.sending_domains()[0], identity.scanned_domains) or ""
    return VolumeCharge(
        customer_id=identity.customer_id,
        domain=domain,
        month=month_of(context.ports.clock.now()),
        volume=tx.size * len(tx.recipients),
        limited=tx.limits.monthly_volume_limited,
        base=tx.limits.monthly_volume_base,
        inbound_factor=tx.limits.inbound_volume_factor,
    )


@step("volume")
def within_volume(context: Context) -> VolumeExhausted | ContentTimedOut | None:
    """The accept commits: the month's volume stays within the allowance, or nothing counts.

    The event, the month's volume and the rate slots are written in one
    transaction (or not at all), which the MTA must still be waiting for.
    """
    charge = volume_charge(context)
    try:
        denied = context.ports.accepting.accept(context, charge)
    except TooLate:
        return ContentTimedOut(context.content_elapsed())
    if denied is not None:
        return VolumeExhausted(charge.domain, denied.used, denied.allowance)
    return None

"""Monthly volume: size × accepted recipients, per sending domain and calendar month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) a moment falls in, as YYYY-MM."""
    return moment.strftime("%Y-%m")


@dataclass(frozen=True)
class VolumeCharge:
    """What an accepted message adds to its domain's month, and the ceiling it must stay under."""

    customer_id: int
    domain: str  # the scanned domain; "" is the customer's bucket for unknown senders
    month: str
    volume: int
    limited: bool  # False: unlimited, counted for the bill only
    base: int
    inbound_factor: float

    def allowance(self, inbound_bytes: int) -> int | None:
        """Bytes the domain may send this month, None if unlimited.

        A known domain earns a multiple of what it received; the customer's
        bucket for unknown senders gets the base allowance alone.
        """
        if not self.limited:
            return None
        earned = int(self.inbound_factor * inbound_bytes) if self.domain else 0
        return self.base + earned


@dataclass(frozen=True)
class VolumeDenied:
    used: int
    allowance: int

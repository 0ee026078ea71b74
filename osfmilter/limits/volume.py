"""Monthly volume: size × accepted recipients, per sending domain and calendar month."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from osfmilter.errors import UsageError

if TYPE_CHECKING:
    from osfmilter.config import PlanLimits

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) a moment falls in, as YYYY-MM."""
    return moment.strftime("%Y-%m")


def parse_month(text: str) -> str:
    """A calendar month as YYYY-MM, or a UsageError naming the bad text."""
    # Years 0001-9998: every month then has a first instant after it.
    if not _MONTH.match(text) or not 1 <= int(text[:4]) <= 9998:
        raise UsageError(f"{text!r} is not a month (YYYY-MM, e.g. 2026-11)")
    return text


def month_end(month: str) -> datetime:
    """The first instant (UTC) after the month."""
    year, number = int(month[:4]), int(month[5:])
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)


def allowance(limits: PlanLimits, domain: str, inbound_bytes: int) -> int | None:
    """Bytes a domain may send in a month on a plan, None if unlimited.

    A known domain earns a multiple of what it received; the customer's
    bucket for unknown senders (domain "") gets the base allowance alone.
    """
    return _allowance(
        limits.monthly_volume_limited,
        limits.monthly_volume_base,
        limits.inbound_volume_factor,
        domain,
        inbound_bytes,
    )


def _allowance(
    limited: bool, base: int, inbound_factor: float, domain: str, inbound_bytes: int
) -> int | None:
    if not limited:
        return None
    earned = int(inbound_factor * inbound_bytes) if domain else 0
    return base + earned


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
        """Bytes the domain may send this month, None if unlimited (see :func:`allowance`)."""
        return _allowance(self.limited, self.base, self.inbound_factor, self.domain, inbound_bytes)


@dataclass(frozen=True)
class VolumeDenied:
    used: int
    allowance: int

"""The month and the allowance arithmetic, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from osfmilter.config import GB, Config
from osfmilter.errors import UsageError
from osfmilter.limits.volume import VolumeCharge, allowance, month_end, month_of, parse_month

FREE = Config().plans.free
PAID = Config().plans.paid


def test_a_moment_falls_in_its_utc_month() -> None:
    assert month_of(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"
    assert month_end("2026-11") == datetime(2026, 12, 1, tzinfo=UTC)
    assert month_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-01", "2026-12", "0001-09"])
def test_a_month_is_yyyy_mm(text: str) -> None:
    assert parse_month(text) == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-3", "March", "2026-03-01", ""])
def test_anything_else_is_refused_by_name(text: str) -> None:
    with pytest.raises(UsageError, match=rf"^{text!r} is not a month \(YYYY-MM, e\.g\. 2026-11\)$"):
        parse_month(text)


def test_a_known_domain_earns_a_multiple_of_what_it_received() -> None:
    assert FREE.monthly_volume_base == GB
    assert allowance(FREE, "example.com", 0) == GB
    assert allowance(FREE, "example.com", 1000) == GB + 2000
    # The bucket for unknown senders earns nothing.
    assert allowance(FREE, "", 1000) == GB
    assert allowance(PAID, "example.com", 1000) is None


@pytest.mark.parametrize("domain", ["example.com", ""])
@pytest.mark.parametrize("inbound", [0, 1, 12_345_678])
def test_the_milter_and_the_report_use_one_formula(domain: str, inbound: int) -> None:
    for limits in (FREE, PAID):
        charge = VolumeCharge(
            customer_id=1,
            domain=domain,
            month="2026-11",
            volume=0,
            limited=limits.monthly_volume_limited,
            base=limits.monthly_volume_base,
            inbound_factor=limits.inbound_volume_factor,
        )
        assert charge.allowance(inbound) == allowance(limits, domain, inbound)

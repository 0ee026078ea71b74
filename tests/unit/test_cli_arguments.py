"""The command line's argument types: durations, times and counts, bounded."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from osfmilter.cli.common import duration, positive, since
from osfmilter.errors import UsageError

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("1d", timedelta(days=1)),
        ("36500d", timedelta(days=36500)),
        ("876000h", timedelta(days=36500)),
    ],
)
def test_a_duration_of_up_to_a_century(text: str, age: timedelta) -> None:
    assert duration(text) == age


@pytest.mark.parametrize(
    ("text", "most"), [("36501d", "36500d"), ("999999d", "36500d"), ("876001h", "876000h")]
)
def test_a_longer_duration_names_the_maximum(text: str, most: str) -> None:
    with pytest.raises(UsageError, match=f"at most {most}$"):
        duration(text)
    with pytest.raises(UsageError, match=f"at most {most}$"):
        since(text, NOW)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_time_outside_the_years_utc_has_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="out of range"):
        since(text, NOW)


def test_a_duration_back_before_the_year_1_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="before the year 1"):
        since("36500d", datetime(50, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("text", ["1", "20", "1000000"])
def test_a_count(text: str) -> None:
    assert positive(text) == int(text)


@pytest.mark.parametrize(
    "text", ["0", "-1", "", "1000001", "99999999999999999999", "9" * 5000, "²", "١٢", "1e3", " 5"]
)
def test_a_count_is_ascii_digits_from_1_to_a_million(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="from 1 to 1000000"):
        positive(text)

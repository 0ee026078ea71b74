"""What the database is given and what its errors say, without a database."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from osfmilter.errors import ConfigError
from osfmilter.storage.db import describe, fit, make_engine, make_url_safe, safe_url

ESCAPED_BYTE = b"\xe4".decode("utf-8", "surrogateescape")  # "\udce4", as pymilter hands it over


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("plain", "plain"),
        ("Grüße, 日本", "Grüße, 日本"),  # real text is kept as it is
        ("a\x00b", "a\\0b"),  # PostgreSQL refuses NUL
        (f"ex{ESCAPED_BYTE}mple", "ex\\xe4mple"),  # an undecodable byte, as an escape
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),  # not an escaped byte
        # Both in one text: every surrogate is written out.
        (f"{ESCAPED_BYTE}\x00\ud83d", "\\udce4\\0\\ud83d"),
    ],
)
def test_text_is_made_storable(value: str, stored: str) -> None:
    assert fit(value, 100) == stored
    fit(value, 100).encode("utf-8")  # every driver can encode it


def test_text_is_cut_to_the_column() -> None:
    assert fit("x" * 600, 500) == "x" * 500
    assert fit("\x00" * 10, 5) == "\\0\\0\\0"[:5]


def test_a_database_error_is_the_first_line_of_the_drivers_own() -> None:
    driver = sqlite3.OperationalError("database is locked\nmore detail")
    wrapped = OperationalError("SELECT secret FROM t", {"password": "x"}, driver)
    assert describe(wrapped) == "database is locked"
    assert describe(driver) == "database is locked"  # the driver's, unwrapped (group commit)


def test_an_error_without_text_is_named_by_its_type() -> None:
    silent = OperationalError("SELECT 1", {}, sqlite3.OperationalError(""))
    assert describe(silent) == "OperationalError"
    assert describe(sqlite3.DatabaseError("  ")) == "DatabaseError"


def test_a_port_that_is_not_a_number_is_an_unparsable_url() -> None:
    """SQLAlchemy's make_url raises ValueError, not ArgumentError, for it."""
    url = "postgresql://u:s3cret@h:abc/db"
    assert safe_url(url) == "<unparsable URL>"
    assert make_url_safe(url).password is None
    with pytest.raises(ConfigError, match="is not an SQLAlchemy URL"):
        make_engine(url, 1.0)

"""Every log line, not only the decision line, is one printable line."""

from __future__ import annotations

import logging
import sys

import pytest

from osfmilter.decisionlog import format_fields
from osfmilter.logsetup import OneLineFormatter

FORMAT = "%(levelname)s %(name)s: %(message)s"
# What a customer's SPF record or a HELO name can bring: CR, an ANSI colour
# sequence, DEL, NEL (C1), a tab, a line separator, an undecodable byte.
HOSTILE = "a\rb\x1b[31mred\x7fc\x85d\te\u2028f" + b"\xe4".decode("utf-8", "surrogateescape")
ESCAPED = "a\\rb\\x1b[31mred\\x7fc\\x85d\\te\\u2028f\\udce4"


def record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("osfmilter.session", logging.WARNING, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "args"),
    [(HOSTILE, ()), ("SPF permerror for %s: %s", ("x.example", HOSTILE))],
    ids=["message", "args"],
)
def test_control_characters_are_escaped_in_every_line(msg: str, args: tuple[str, ...]) -> None:
    line = OneLineFormatter(FORMAT).format(record(msg, *args))
    assert line.endswith(ESCAPED)
    assert line.isprintable()
    assert line.encode("utf-8")  # no surrogate left for a UTF-8 handler to choke on


def test_a_traceback_stays_on_the_line_of_its_record() -> None:
    try:
        raise ValueError("bad\r\nvalue")
    except ValueError:
        line = OneLineFormatter(FORMAT).format(record("failed", exc_info=sys.exc_info()))
    assert line.startswith("WARNING osfmilter.session: failed\\nTraceback")
    assert line.endswith("ValueError: bad\\r\\nvalue") and line.isprintable()


def test_a_decision_line_reads_the_same_after_the_formatter() -> None:
    """The decision line escapes its values already; the formatter adds nothing."""
    fields = format_fields({"helo": HOSTILE, "from": "<a\\b@x>"})
    assert OneLineFormatter("%(message)s").format(record("%s", fields)) == fields
    assert fields == f'helo="{ESCAPED}" from="<a\\\\b@x>"'

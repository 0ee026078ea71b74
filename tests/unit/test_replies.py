"""Every reason has one reply whose class matches its nature."""

from __future__ import annotations

import pytest

from osfmilter.decisionlog import format_fields
from osfmilter.replies import Reason, Refusal, reply_for

PARAMS = {
    "client": "192.0.2.1",
    "register_hint": "h",
    "identity": "i",
    "contact": "c",
    "size": 1,
    "limit": 1,
    "sender_class": "a known",
    "window": "5 minutes",
    "retry_after": 10,
    "domain": "example.com",
    "used": 1,
    "allowance": 2,
    "virus": "Eicar",
    "score": "12",
    "threshold": "10",
    "scanner": "clamav",
    "ip": "198.51.100.7",
    "advice": "publish an SPF record",
    "cause": "too many DNS lookups",
}


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.ACCEPTED])
def test_every_reason_has_an_enhanced_code_of_its_class(reason: Reason) -> None:
    reply = reply_for(Refusal(reason, PARAMS))
    assert str(reply.code)[0] == reply.dsn[0]
    assert reply.code // 100 in (4, 5)


def test_faults_are_never_permanent() -> None:
    for reason in (Reason.INTERNAL_ERROR, Reason.DATABASE_ERROR):
        reply = reply_for(Refusal(reason))
        assert (reply.code, reply.dsn, reply.action) == (451, "4.3.0", "tempfail")


def test_hostile_values_cannot_break_the_reply_line() -> None:
    reply = reply_for(
        Refusal(Reason.RELAY_DENIED, {**PARAMS, "client": "a\r\n250 ok\x00" + "x" * 500})
    )
    assert "\r" not in reply.text and "\n" not in reply.text and "\x00" not in reply.text
    assert len(reply.text) < 400


def test_log_line_escapes_control_characters() -> None:
    line = format_fields({"from": "<a\r\nb@x>", "qid": "ABC", "text": 'say "hi"', "skip": ""})
    assert line == 'from="<a\\r\\nb@x>" qid=ABC text="say \\"hi\\""'
    assert "\n" not in line


def test_log_line_escapes_unicode_line_separators() -> None:
    line = format_fields({"helo": "a\u2028b\u2029c\x85d"})
    assert line == 'helo="a\\u2028b\\u2029c\\x85d"'
    assert len(line.splitlines()) == 1

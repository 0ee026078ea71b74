"""Every refusal has one reply whose class matches its nature."""

from __future__ import annotations

from typing import get_args

import pytest

from osfmilter.decisionlog import format_fields
from osfmilter.replies import (
    Blocked,
    ContentTimedOut,
    DatabaseError,
    ForeignDomain,
    InternalError,
    MessageTooLarge,
    RateLimited,
    Reason,
    Refusal,
    RelayDenied,
    ScannerUnavailable,
    SpamScore,
    SpfFail,
    SpfPermError,
    SpfTempError,
    TooManyRecipients,
    VirusFound,
    VolumeExhausted,
    reply_for,
)
from osfmilter.verdict import Reject, TempFail, action_of

# One of each refusal, with the class and enhanced code its reply must have.
EXAMPLES: list[tuple[Refusal, type[TempFail | Reject], int, str]] = [
    (RelayDenied("192.0.2.1", "register it"), Reject, 550, "5.7.1"),
    (Blocked("192.0.2.0/24", "contact support"), Reject, 554, "5.7.1"),
    (ForeignDomain("other.example", False, "add it"), Reject, 550, "5.7.1"),
    (ForeignDomain("other.example", True, "add it"), Reject, 550, "5.7.1"),
    (MessageTooLarge(2, 1), Reject, 552, "5.3.4"),
    (TooManyRecipients(5, False), TempFail, 452, "4.5.3"),
    (RateLimited("192.0.2.0/24", 100, 300.0, "all mail", 10), TempFail, 451, "4.7.1"),
    (VolumeExhausted("example.com", 1, 2), TempFail, 451, "4.7.1"),
    (SpfFail("example.com", "198.51.100.7", "publish it", False), Reject, 550, "5.7.23"),
    (SpfFail("example.com", "198.51.100.7", "publish it", True), TempFail, 451, "4.7.24"),
    (SpfTempError("example.com"), TempFail, 451, "4.7.24"),
    (SpfPermError("example.com", "too many DNS lookups", False), Reject, 550, "5.7.24"),
    (SpfPermError("example.com", "too many DNS lookups", True), TempFail, 451, "4.7.24"),
    (VirusFound("Eicar"), Reject, 554, "5.7.1"),
    (SpamScore(12.0, 10.0), Reject, 550, "5.7.1"),
    (ScannerUnavailable("clamav"), TempFail, 451, "4.7.1"),
    (InternalError(), TempFail, 451, "4.3.0"),
    (DatabaseError(), TempFail, 451, "4.3.0"),
    (ContentTimedOut(299.5), TempFail, 451, "4.3.0"),
]


def test_every_refusal_has_an_example() -> None:
    assert {type(r) for r, *_ in EXAMPLES} == set(get_args(Refusal))
    reasons = {r.reason for r, *_ in EXAMPLES}
    assert reasons == {r for r in Reason if r is not Reason.ACCEPTED}


@pytest.mark.parametrize(("refusal", "kind", "code", "enhanced_code"), EXAMPLES)
def test_each_refusal_has_its_class_and_codes(
    refusal: Refusal, kind: type[TempFail | Reject], code: int, enhanced_code: str
) -> None:
    reply = reply_for(refusal)
    assert type(reply) is kind and (reply.code, reply.enhanced_code) == (code, enhanced_code)


def test_a_reply_of_the_wrong_class_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="not of the class"):
        TempFail(451, "5.7.1", "x")
    with pytest.raises(ValueError, match="not of the class"):
        Reject(550, "4.7.1", "x")
    with pytest.raises(ValueError, match="one line"):
        Reject(550, "5.7.1", "a\r\n250 ok")


def test_faults_are_never_permanent() -> None:
    for refusal in (InternalError(), DatabaseError(), ContentTimedOut(1.0)):
        reply = reply_for(refusal)
        assert isinstance(reply, TempFail) and (reply.code, reply.enhanced_code) == (451, "4.3.0")
        assert action_of(reply) == "tempfail"


def test_the_texts_name_their_values() -> None:
    rate = reply_for(RateLimited("192.0.2.0/24", 100, 300.0, "all mail", 240)).text
    assert rate == (
        "too many messages from 192.0.2.0/24: at most 100 per 5 minutes for all mail; "
        "retry in 240 seconds"
    )
    assert "per 30 seconds" in reply_for(RateLimited("x", 1, 30.0, "all mail", 1)).text
    assert reply_for(SpamScore(12.5, 10.0)).text == (
        "message rejected as spam (score 12.5, limit 10)"
    )
    assert "for unknown senders: 1 of 2 bytes" in reply_for(VolumeExhausted("", 1, 2)).text


def test_hostile_values_cannot_break_the_reply_line() -> None:
    reply = reply_for(RelayDenied("a\r\n250 ok\x00" + "x" * 500, "h"))
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

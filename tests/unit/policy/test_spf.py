"""spf: the sender domain's SPF for the relay's addresses, answered as configured."""

from __future__ import annotations

import pytest

from osfmilter.config import config_from_dict
from osfmilter.policy import engine
from osfmilter.policy.steps.spf import spf_authorizes_relay
from osfmilter.replies import reply_for
from osfmilter.spf.result import SpfOutcome
from tests.unit.policy.builders import StubSpf, world

RELAY_V4 = "192.0.2.25"


def outcome(result: str) -> SpfOutcome:
    explanation = "too many DNS lookups" if result == "permerror" else ""
    return SpfOutcome("example.com", result, explanation, ((RELAY_V4, result, explanation),))


@pytest.mark.parametrize(
    ("result", "settings", "expected"),
    [
        ("pass", {}, None),
        ("fail", {}, (550, "5.7.23")),
        ("fail", {"on_fail": "tempfail"}, (451, "4.7.24")),
        ("fail", {"on_fail": "record"}, None),
        ("softfail", {}, None),
        ("neutral", {}, None),
        ("none", {}, None),
        ("temperror", {}, (451, "4.7.24")),
        ("temperror", {"on_temperror": "record"}, None),
        ("permerror", {}, None),
        ("permerror", {"on_permerror": "reject"}, (550, "5.7.24")),
        ("permerror", {"on_permerror": "tempfail"}, (451, "4.7.24")),
    ],
)
def test_results_answer_as_configured(
    result: str, settings: dict[str, str], expected: tuple[int, str] | None
) -> None:
    config = config_from_dict(
        {"spf": {"outbound_ips": [RELAY_V4], "include": "_spf.relay.example", **settings}}
    )
    spf = StubSpf(outcome(result))
    w = world(config=config, spf=spf)
    refusal = spf_authorizes_relay.check(w.context)
    reply = reply_for(refusal) if refusal else None
    assert (None if reply is None else (reply.code, reply.enhanced_code)) == expected
    assert w.tx.spf == spf.outcome and spf.asked == [("a@example.com", "mail.example.com")]
    if reply is not None and result == "fail":
        assert "include:_spf.relay.example" in reply.text and RELAY_V4 in reply.text
    if reply is not None and result == "permerror":
        assert "too many DNS lookups" in reply.text


def test_without_an_include_the_advice_names_the_addresses() -> None:
    config = config_from_dict({"spf": {"outbound_ips": [RELAY_V4]}})
    refusal = spf_authorizes_relay.check(world(config=config, spf=StubSpf(outcome("fail"))).context)
    assert refusal is not None
    assert "add the relay's addresses to the SPF record" in reply_for(refusal).text


def test_spf_off_is_not_a_check_that_ran() -> None:
    w = world()  # no SPF port: [spf] is off
    assert engine.run((spf_authorizes_relay,), w.context).passed == ()
    assert w.tx.checks == [] and w.tx.spf is None

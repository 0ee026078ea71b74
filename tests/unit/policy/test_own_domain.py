"""sender_domain and from_domain: another customer's verified domain is refused, 550 5.7.1."""

from __future__ import annotations

import pytest

from osfmilter.config import config_from_dict
from osfmilter.policy.steps.own_domain import from_domains_not_foreign, sender_domain_not_foreign
from osfmilter.replies import ForeignDomain, Reason, reply_for
from tests.unit.policy.builders import world

# The identity's customer is 7 (tests.fakes.identity); 8 is another customer.
OWNERS = {"example.com": 7, "other.example": 8, "sub.mine.example": 7, "mine.example": 8}


@pytest.mark.parametrize(
    ("sender", "foreign"),
    [
        ("a@example.com", None),  # its own
        ("a@mail.example.com", None),  # under its own
        ("a@nobody.example", None),  # nobody's: an unknown sender, not refused here
        ("", None),  # the null sender
        ("a@other.example", "other.example"),
        ("a@deep.sub.other.example", "deep.sub.other.example"),
        # The closest registered domain decides: a subdomain registered on its own.
        ("a@x.sub.mine.example", None),
        ("a@x.mine.example", "x.mine.example"),
    ],
)
def test_the_envelope_sender_domain(sender: str, foreign: str | None) -> None:
    w = world(sender=sender, owners=OWNERS)
    refusal = sender_domain_not_foreign.check(w.context)
    if foreign is None:
        assert refusal is None
        return
    assert refusal == ForeignDomain(foreign, False, w.context.config.replies.domain_hint)
    assert refusal.reason is Reason.FOREIGN_SENDER
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (550, "5.7.1")
    assert reply.text.startswith(f"the sender domain {foreign} is registered to another customer")
    assert "add it to your own account" in reply.text


def test_every_from_author_counts_and_each_domain_is_asked_once() -> None:
    w = world(owners=OWNERS)
    w.tx.header_from_domains.extend(["example.com", "example.com"])
    assert from_domains_not_foreign.check(w.context) is None
    assert w.domains.asked == ["example.com"]
    w.tx.header_from_domains.append("other.example")  # a second author, another customer's
    refusal = from_domains_not_foreign.check(w.context)
    assert refusal == ForeignDomain("other.example", True, w.context.config.replies.domain_hint)
    assert refusal.reason is Reason.FOREIGN_FROM
    assert reply_for(refusal).text.startswith("the From: domain other.example is registered")


def test_a_from_header_without_an_address_is_not_foreign() -> None:
    w = world(owners=OWNERS)
    w.tx.header_from_domains.append("")
    assert from_domains_not_foreign.check(w.context) is None
    assert w.domains.asked == []


def test_the_operator_can_treat_foreign_domains_as_unknown_instead() -> None:
    config = config_from_dict({"domains": {"refuse_foreign": False}})
    w = world(sender="a@other.example", config=config, owners=OWNERS)
    for each in (sender_domain_not_foreign, from_domains_not_foreign):
        assert each.when is not None and not each.when(w.context)
    assert world(owners=OWNERS).context.config.domains.refuse_foreign  # the default refuses


def test_the_hint_comes_from_the_config() -> None:
    config = config_from_dict({"replies": {"domain_hint": "ask support to move it"}})
    w = world(sender="a@other.example", config=config, owners=OWNERS)
    refusal = sender_domain_not_foreign.check(w.context)
    assert refusal is not None and reply_for(refusal).text.endswith(
        "to send as it, ask support to move it"
    )

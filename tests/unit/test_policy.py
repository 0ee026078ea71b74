"""The pure checks, one stage at a time, with the exact SMTP answers."""

from __future__ import annotations

import pytest

from osfmilter.config import Config, PlanLimits
from osfmilter.model import Identity, ServerState, Transaction, is_known_sender
from osfmilter.policy import (
    BODY_CHECKS,
    EOM_CHECKS,
    MAIL_CHECKS,
    RCPT_CHECKS,
    BodyFacts,
    EomFacts,
    MailFacts,
    RcptFacts,
    first_refusal,
)
from osfmilter.replies import Reason, reply_for
from tests.fakes import identity

FREE = Config().plans.free
PAID = Config().plans.paid


REGISTERED = identity()


def mail_facts(
    ident: Identity | None = REGISTERED, size: int | None = None, limits: PlanLimits = FREE
) -> MailFacts:
    return MailFacts(
        client="192.0.2.10",
        transaction=Transaction(sender="a@example.com", declared_size=size, login=""),
        identity=ident,
        limits=limits,
        replies=Config().replies,
    )


def test_unregistered_client_is_refused_with_550_and_a_hint() -> None:
    refusal = first_refusal(MAIL_CHECKS, mail_facts(ident=None))
    assert refusal is not None and refusal.reason is Reason.RELAY_DENIED
    reply = reply_for(refusal)
    assert (reply.code, reply.dsn) == (550, "5.7.1")
    assert "192.0.2.10" in reply.text and "SMTP servers > Add" in reply.text


def test_registered_client_passes_mail() -> None:
    assert first_refusal(MAIL_CHECKS, mail_facts()) is None


def test_unsafe_server_is_blocked_with_554_and_contact() -> None:
    refusal = first_refusal(MAIL_CHECKS, mail_facts(ident=identity(state=ServerState.ONVEILIG)))
    assert refusal is not None
    reply = reply_for(refusal)
    assert (reply.code, reply.dsn, reply.action) == (554, "5.7.1", "reject")
    assert "contact support" in reply.text


def test_suspicious_server_is_not_refused_at_mail() -> None:
    assert (
        first_refusal(MAIL_CHECKS, mail_facts(ident=identity(state=ServerState.VERDACHT))) is None
    )


@pytest.mark.parametrize(
    ("size", "refused"), [(None, False), (52_428_800, False), (52_428_801, True)]
)
def test_declared_size_limit(size: int | None, refused: bool) -> None:
    refusal = first_refusal(MAIL_CHECKS, mail_facts(size=size))
    assert (refusal is not None) is refused
    if refusal:
        assert (reply_for(refusal).code, reply_for(refusal).dsn) == (552, "5.3.4")


@pytest.mark.parametrize(
    ("limits", "known", "accepted", "refused"),
    [
        (FREE, True, 49, False),
        (FREE, True, 50, True),
        (FREE, False, 4, False),
        (FREE, False, 5, True),
        (PAID, True, 499, False),
        (PAID, True, 500, True),
        (PAID, False, 499, False),
        (PAID, False, 500, True),
    ],
)
def test_recipient_limits(limits: PlanLimits, known: bool, accepted: int, refused: bool) -> None:
    refusal = first_refusal(RCPT_CHECKS, RcptFacts(accepted, known, limits))
    assert (refusal is not None) is refused
    if refusal:
        reply = reply_for(refusal)
        assert (reply.code, reply.dsn, reply.action) == (452, "4.5.3", "tempfail")


def test_streamed_size_over_the_limit_is_552() -> None:
    assert first_refusal(BODY_CHECKS, BodyFacts(52_428_800, FREE)) is None
    refusal = first_refusal(BODY_CHECKS, BodyFacts(52_428_801, FREE))
    assert refusal is not None and reply_for(refusal).code == 552


def test_header_from_of_an_unknown_sender_rechecks_recipients() -> None:
    assert first_refusal(EOM_CHECKS, EomFacts(1000, 50, True, FREE)) is None
    refusal = first_refusal(EOM_CHECKS, EomFacts(1000, 6, False, FREE))
    assert refusal is not None
    assert (reply_for(refusal).code, reply_for(refusal).dsn) == (452, "4.5.3")
    assert "unknown" in reply_for(refusal).text


@pytest.mark.parametrize(
    ("domain", "known"),
    [
        ("example.com", True),
        ("mail.example.com", True),
        ("a.b.example.com", True),
        ("badexample.com", False),
        ("example.com.evil", False),
        ("com", False),
        ("", False),
    ],
)
def test_known_sender_is_the_domain_or_a_subdomain(domain: str, known: bool) -> None:
    assert is_known_sender(domain, frozenset({"example.com"})) is known

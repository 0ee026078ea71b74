"""The checks of docs/rules.rst, 'Order of the checks', one function each, by SMTP stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from osfmilter.config import PlanLimits, RepliesSection, SpfSection
from osfmilter.limits.rate import Bucket, RateDenied, Reservation
from osfmilter.limits.volume import VolumeDenied
from osfmilter.model import Identity, ServerState, Transaction
from osfmilter.replies import Reason, Refusal
from osfmilter.scanners.service import ScanReport
from osfmilter.spf.result import SpfOutcome

F = TypeVar("F")
Check = Callable[[F], Refusal | None]


def first_refusal(checks: Sequence[Check[F]], facts: F) -> Refusal | None:
    for check in checks:
        if (refusal := check(facts)) is not None:
            return refusal
    return None


# MAIL FROM -----------------------------------------------------------------


@dataclass(frozen=True)
class MailFacts:
    client: str
    transaction: Transaction
    identity: Identity | None
    limits: PlanLimits
    replies: RepliesSection


def relay_permitted(facts: MailFacts) -> Refusal | None:
    if facts.identity is None:
        return Refusal(
            Reason.RELAY_DENIED,
            {"client": facts.client, "register_hint": facts.replies.register_hint},
        )
    return None


def not_blocked(facts: MailFacts) -> Refusal | None:
    if facts.identity is not None and facts.identity.state is ServerState.ONVEILIG:
        return Refusal(
            Reason.BLOCKED,
            {"identity": facts.identity.name, "contact": facts.replies.contact},
        )
    return None


def declared_size(facts: MailFacts) -> Refusal | None:
    size = facts.transaction.declared_size
    if size is not None and size > facts.limits.max_message_size:
        return Refusal(Reason.MESSAGE_SIZE, {"size": size, "limit": facts.limits.max_message_size})
    return None


MAIL_CHECKS: tuple[Check[MailFacts], ...] = (relay_permitted, not_blocked, declared_size)


# RCPT TO -------------------------------------------------------------------


@dataclass(frozen=True)
class RcptFacts:
    accepted: int  # recipients accepted so far in this transaction
    sender_known: bool  # by the envelope sender's domain; the header is not seen yet
    limits: PlanLimits


def _recipient_limit(limits: PlanLimits, known: bool) -> int:
    return limits.max_recipients_known if known else limits.max_recipients_unknown


def _sender_class(known: bool) -> str:
    return "a known" if known else "an unknown"


def recipients_within_limit(facts: RcptFacts) -> Refusal | None:
    limit = _recipient_limit(facts.limits, facts.sender_known)
    if facts.accepted >= limit:
        return Refusal(
            Reason.RECIPIENT_LIMIT,
            {"limit": limit, "sender_class": _sender_class(facts.sender_known)},
        )
    return None


RCPT_CHECKS: tuple[Check[RcptFacts], ...] = (recipients_within_limit,)


# Body ----------------------------------------------------------------------


@dataclass(frozen=True)
class BodyFacts:
    size: int  # bytes received so far, headers included
    limits: PlanLimits


def streamed_size(facts: BodyFacts) -> Refusal | None:
    if facts.size > facts.limits.max_message_size:
        limit = facts.limits.max_message_size
        return Refusal(Reason.MESSAGE_SIZE, {"size": facts.size, "limit": limit})
    return None


BODY_CHECKS: tuple[Check[BodyFacts], ...] = (streamed_size,)


# End of message ------------------------------------------------------------


@dataclass(frozen=True)
class EomFacts:
    size: int
    recipients: int
    sender_known: bool  # now by the header From: domain
    limits: PlanLimits


def message_size(facts: EomFacts) -> Refusal | None:
    return streamed_size(BodyFacts(facts.size, facts.limits))


def recipients_for_header_sender(facts: EomFacts) -> Refusal | None:
    """RCPT time trusted the envelope; the From: header may turn the sender unknown."""
    limit = _recipient_limit(facts.limits, facts.sender_known)
    if facts.recipients > limit:
        return Refusal(
            Reason.RECIPIENT_LIMIT,
            {"limit": limit, "sender_class": _sender_class(facts.sender_known)},
        )
    return None


EOM_CHECKS: tuple[Check[EomFacts], ...] = (message_size, recipients_for_header_sender)


# Rate (MAIL FROM, and again at the end for a From: header that turned unknown)


ALL_MAIL = "all"
UNKNOWN_SENDERS = "unknown"


def rate_buckets(limits: PlanLimits, state: ServerState, known: bool) -> tuple[Bucket, ...]:
    """The windows a message counts in: all of the identity's mail, and unknown senders'."""
    everything = limits.rate_suspicious if state is ServerState.VERDACHT else limits.rate_known
    buckets: tuple[Bucket, ...] = (Bucket(ALL_MAIL, everything),)
    if not known:
        buckets += (Bucket(UNKNOWN_SENDERS, limits.rate_unknown),)
    return buckets


@dataclass(frozen=True)
class RateFacts:
    outcome: Reservation | RateDenied
    identity: Identity
    window: float


def within_rate(facts: RateFacts) -> Refusal | None:
    denied = facts.outcome
    if not isinstance(denied, RateDenied):
        return None
    if denied.bucket == UNKNOWN_SENDERS:
        what = "mail from unknown senders"
    elif facts.identity.state is ServerState.VERDACHT:
        what = "a server in state verdacht (suspicious)"
    else:
        what = "all mail"
    minutes = facts.window / 60
    return Refusal(
        Reason.RATE_LIMIT,
        {
            "identity": facts.identity.name,
            "limit": denied.limit,
            "window": f"{minutes:g} minutes" if minutes >= 1 else f"{facts.window:g} seconds",
            "sender_class": what,
            "retry_after": denied.retry_after,
        },
    )


RATE_CHECKS: tuple[Check[RateFacts], ...] = (within_rate,)


# Monthly volume (end of message) ---------------------------------------------


@dataclass(frozen=True)
class VolumeFacts:
    denied: VolumeDenied | None
    domain: str


def within_volume(facts: VolumeFacts) -> Refusal | None:
    if facts.denied is None:
        return None
    return Refusal(
        Reason.VOLUME_LIMIT,
        {
            "domain": facts.domain or "unknown senders",
            "used": facts.denied.used,
            "allowance": facts.denied.allowance,
        },
    )


VOLUME_CHECKS: tuple[Check[VolumeFacts], ...] = (within_volume,)


# Scanning (end of message) ---------------------------------------------------


@dataclass(frozen=True)
class ScanFacts:
    report: ScanReport
    reject_score: float
    on_error: Mapping[str, str]  # scanner name -> "tempfail" | "accept"


def no_virus(facts: ScanFacts) -> Refusal | None:
    if virus := facts.report.virus:
        return Refusal(Reason.VIRUS, {"virus": virus})
    return None


def not_spam(facts: ScanFacts) -> Refusal | None:
    spam = facts.report.spam
    if spam is not None and spam.score is not None and spam.score >= facts.reject_score:
        return Refusal(
            Reason.SPAM, {"score": f"{spam.score:g}", "threshold": f"{facts.reject_score:g}"}
        )
    return None


def scanned(facts: ScanFacts) -> Refusal | None:
    """A scanner that could not answer delays the message, unless configured to let it pass."""
    for failure in facts.report.failures:
        if facts.on_error.get(failure.scanner, "tempfail") == "tempfail":
            return Refusal(Reason.SCANNER_ERROR, {"scanner": failure.scanner})
    return None


# A definite verdict from one scanner stands even if another one failed.
SCAN_CHECKS: tuple[Check[ScanFacts], ...] = (no_virus, not_spam, scanned)


# SPF (MAIL FROM) -----------------------------------------------------------------


@dataclass(frozen=True)
class SpfFacts:
    outcome: SpfOutcome
    settings: SpfSection


def spf_authorizes_relay(facts: SpfFacts) -> Refusal | None:
    """fail, temperror and permerror answer as configured; softfail, neutral, none pass."""
    outcome, settings = facts.outcome, facts.settings
    include = f"include:{settings.include} " if settings.include else ""
    params = {
        "domain": outcome.domain,
        "ip": outcome.failing_ip,
        "cause": outcome.explanation,
        "advice": f'publish "v=spf1 {include}-all" (or ~all)'
        if include
        else "add the relay's addresses to the SPF record",
    }
    reason = {
        ("fail", "reject"): Reason.SPF_FAIL,
        ("fail", "tempfail"): Reason.SPF_FAIL_DEFERRED,
        ("temperror", "tempfail"): Reason.SPF_TEMPERROR,
        ("permerror", "reject"): Reason.SPF_PERMERROR,
        ("permerror", "tempfail"): Reason.SPF_PERMERROR_DEFERRED,
    }.get(
        (
            outcome.result,
            {
                "fail": settings.on_fail,
                "temperror": settings.on_temperror,
                "permerror": settings.on_permerror,
            }.get(outcome.result, "record"),
        )
    )
    return Refusal(reason, params) if reason is not None else None


SPF_CHECKS: tuple[Check[SpfFacts], ...] = (spf_authorizes_relay,)

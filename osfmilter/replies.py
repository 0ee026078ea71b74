"""Every SMTP answer osfmilter refuses with: one dataclass per refusal, one reply each.

A step of the policy returns a refusal with its own typed fields;
:func:`reply_for` is the one place that turns it into a :class:`TempFail`
or :class:`Reject`. The class (4xx delays, 5xx refuses) is fixed here per
refusal, so a limit can never accidentally become permanent, and the
``match`` is proven complete by mypy (``assert_never``): a refusal without
a reply, or a reply naming a field a refusal does not have, fails the type
check instead of becoming a 451 at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from osfmilter.verdict import Refused, Reject, TempFail


class Reason(StrEnum):
    """Why a decision was made; the event ``reason`` and the decisions metric's label."""

    ACCEPTED = "accepted"
    RELAY_DENIED = "relay_denied"
    BLOCKED = "blocked"
    FOREIGN_SENDER = "foreign_sender"
    FOREIGN_FROM = "foreign_from"
    MESSAGE_SIZE = "message_size"
    RECIPIENT_LIMIT = "recipient_limit"
    RATE_LIMIT = "rate_limit"
    SPF_FAIL = "spf_fail"
    SPF_FAIL_DEFERRED = "spf_fail_deferred"
    SPF_TEMPERROR = "spf_temperror"
    SPF_PERMERROR = "spf_permerror"
    SPF_PERMERROR_DEFERRED = "spf_permerror_deferred"
    VIRUS = "virus"
    SPAM = "spam"
    SCANNER_ERROR = "scanner_error"
    VOLUME_LIMIT = "volume_limit"
    INTERNAL_ERROR = "internal_error"
    DATABASE_ERROR = "database_error"


@dataclass(frozen=True)
class RelayDenied:
    client: str
    register_hint: str

    reason = Reason.RELAY_DENIED


@dataclass(frozen=True)
class Blocked:
    identity: str
    contact: str

    reason = Reason.BLOCKED


@dataclass(frozen=True)
class ForeignDomain:
    """The sender's domain is a verified domain of another customer (docs/domains.rst)."""

    domain: str
    in_header: bool  # the From: header's domain, not the envelope sender's
    hint: str  # how to add it to one's own account

    @property
    def reason(self) -> Reason:
        return Reason.FOREIGN_FROM if self.in_header else Reason.FOREIGN_SENDER


@dataclass(frozen=True)
class MessageTooLarge:
    size: int
    limit: int

    reason = Reason.MESSAGE_SIZE


@dataclass(frozen=True)
class TooManyRecipients:
    limit: int
    sender_known: bool

    reason = Reason.RECIPIENT_LIMIT


@dataclass(frozen=True)
class RateLimited:
    identity: str
    limit: int
    window: float  # seconds
    sender_class: str  # which window is full: "all mail", "mail from unknown senders"...
    retry_after: int  # seconds

    reason = Reason.RATE_LIMIT


@dataclass(frozen=True)
class VolumeExhausted:
    domain: str  # "" for unknown senders
    used: int
    allowance: int

    reason = Reason.VOLUME_LIMIT


@dataclass(frozen=True)
class SpfFail:
    domain: str
    ip: str
    advice: str
    deferred: bool  # [spf] on_fail = "tempfail"

    @property
    def reason(self) -> Reason:
        return Reason.SPF_FAIL_DEFERRED if self.deferred else Reason.SPF_FAIL


@dataclass(frozen=True)
class SpfTempError:
    domain: str

    reason = Reason.SPF_TEMPERROR


@dataclass(frozen=True)
class SpfPermError:
    domain: str
    cause: str
    deferred: bool  # [spf] on_permerror = "tempfail"

    @property
    def reason(self) -> Reason:
        return Reason.SPF_PERMERROR_DEFERRED if self.deferred else Reason.SPF_PERMERROR


@dataclass(frozen=True)
class VirusFound:
    virus: str

    reason = Reason.VIRUS


@dataclass(frozen=True)
class SpamScore:
    score: float
    threshold: float

    reason = Reason.SPAM


@dataclass(frozen=True)
class ScannerUnavailable:
    scanner: str

    reason = Reason.SCANNER_ERROR


@dataclass(frozen=True)
class InternalError:
    """A fault: a bug, a scanner or DNS failing where nothing else answers."""

    reason = Reason.INTERNAL_ERROR


@dataclass(frozen=True)
class DatabaseError:
    reason = Reason.DATABASE_ERROR


@dataclass(frozen=True)
class ContentTimedOut:
    """The MTA stopped waiting ([milter] content_timeout): a fault, answered as one."""

    seconds: float  # from the last content answer to the decision

    reason = Reason.INTERNAL_ERROR


Refusal = (
    RelayDenied
    | Blocked
    | ForeignDomain
    | MessageTooLarge
    | TooManyRecipients
    | RateLimited
    | VolumeExhausted
    | SpfFail
    | SpfTempError
    | SpfPermError
    | VirusFound
    | SpamScore
    | ScannerUnavailable
    | InternalError
    | DatabaseError
    | ContentTimedOut
)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_VALUE = 200


def _clean(value: object) -> str:
    """A value as one printable line of bounded length."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _window(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minutes" if minutes >= 1 else f"{seconds:g} seconds"


def _spf_refused(deferred: bool, text: str) -> Refused:
    return TempFail(451, "4.7.24", text) if deferred else Reject(550, "5.7.24", text)


def reply_for(refusal: Refusal) -> Refused:
    c = _clean
    match refusal:
        case RelayDenied(client, hint):
            return Reject(550, "5.7.1", f"relay not permitted for {c(client)}: {c(hint)}")
        case Blocked(identity, contact):
            return Reject(
                554, "5.7.1", f"sending server {c(identity)} is blocked as unsafe; {c(contact)}"
            )
        case ForeignDomain(domain, in_header, hint):
            which = "the From: domain" if in_header else "the sender domain"
            return Reject(
                550,
                "5.7.1",
                f"{which} {c(domain)} is registered to another customer of this relay; "
                f"to send as it, {c(hint)}",
            )
        case MessageTooLarge(size, limit):
            return Reject(552, "5.3.4", f"message size {size} exceeds the limit of {limit} bytes")
        case TooManyRecipients(limit, known):
            sender = "a known" if known else "an unknown"
            return TempFail(
                452,
                "4.5.3",
                f"too many recipients for {sender} sender (at most {limit} per message); "
                "send the rest in another message",
            )
        case RateLimited(identity, limit, window, sender_class, retry_after):
            return TempFail(
                451,
                "4.7.1",
                f"too many messages from {c(identity)}: at most {limit} per {_window(window)} "
                f"for {sender_class}; retry in {retry_after} seconds",
            )
        case VolumeExhausted(domain, used, allowance):
            return TempFail(
                451,
                "4.7.1",
                f"monthly volume limit reached for {c(domain or 'unknown senders')}: {used} of "
                f"{allowance} bytes used this month; upgrade the plan or retry next month",
            )
        case SpfFail(domain, ip, advice, deferred):
            text = (
                f"SPF of {c(domain)} does not allow this relay ({c(ip)}) to send its mail; "
                f"{c(advice)}"
            )
            return TempFail(451, "4.7.24", text) if deferred else Reject(550, "5.7.23", text)
        case SpfTempError(domain):
            return TempFail(
                451,
                "4.7.24",
                f"SPF of {c(domain)} could not be checked (DNS error); please retry later",
            )
        case SpfPermError(domain, cause, deferred):
            return _spf_refused(
                deferred, f"SPF record of {c(domain)} is broken ({c(cause)}); please fix it"
            )
        case VirusFound(virus):
            return Reject(554, "5.7.1", f"message contains a virus ({c(virus)}); it was not sent")
        case SpamScore(score, threshold):
            return Reject(
                550, "5.7.1", f"message rejected as spam (score {score:g}, limit {threshold:g})"
            )
        case ScannerUnavailable(scanner):
            return TempFail(
                451,
                "4.7.1",
                f"message could not be scanned ({c(scanner)} unavailable); please retry later",
            )
        case InternalError() | ContentTimedOut():
            return TempFail(451, "4.3.0", "temporary internal error, please retry later")
        case DatabaseError():
            return TempFail(451, "4.3.0", "temporary database error, please retry later")
        case _:
            assert_never(refusal)

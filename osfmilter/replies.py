"""Every SMTP answer osfmilter gives: code, enhanced status code and text.

A check only names a :class:`Reason`; this module is the one place that turns
it into a reply. The reply's class (4xx delays, 5xx refuses) is fixed here per
reason, so a limit can never accidentally become permanent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why a decision was made; also the event ``reason`` and the metric label."""

    ACCEPTED = "accepted"
    RELAY_DENIED = "relay_denied"
    BLOCKED = "blocked"
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


class Action(StrEnum):
    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@dataclass(frozen=True)
class Refusal:
    """A check's finding: the reason, and values for the reply text."""

    reason: Reason
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    code: int
    dsn: str
    text: str

    @property
    def action(self) -> Action:
        return Action.TEMPFAIL if 400 <= self.code < 500 else Action.REJECT


@dataclass(frozen=True)
class _Template:
    code: int
    dsn: str
    text: str


_TEMPLATES: dict[Reason, _Template] = {
    Reason.RELAY_DENIED: _Template(
        550, "5.7.1", "relay not permitted for {client}: {register_hint}"
    ),
    Reason.BLOCKED: _Template(
        554, "5.7.1", "sending server {identity} is blocked as unsafe; {contact}"
    ),
    Reason.MESSAGE_SIZE: _Template(
        552, "5.3.4", "message size {size} exceeds the limit of {limit} bytes"
    ),
    Reason.RECIPIENT_LIMIT: _Template(
        452,
        "4.5.3",
        "too many recipients for {sender_class} sender (at most {limit} "
        "per message); send the rest in another message",
    ),
    Reason.RATE_LIMIT: _Template(
        451,
        "4.7.1",
        "too many messages from {identity}: at most {limit} per {window} "
        "for {sender_class}; retry in {retry_after} seconds",
    ),
    Reason.VOLUME_LIMIT: _Template(
        451,
        "4.7.1",
        "monthly volume limit reached for {domain}: {used} of {allowance} "
        "bytes used this month; upgrade the plan or retry next month",
    ),
    Reason.SPF_FAIL: _Template(
        550, "5.7.23", "SPF of {domain} does not allow this relay ({ip}) to send its mail; {advice}"
    ),
    Reason.SPF_FAIL_DEFERRED: _Template(
        451, "4.7.24", "SPF of {domain} does not allow this relay ({ip}) to send its mail; {advice}"
    ),
    Reason.SPF_TEMPERROR: _Template(
        451, "4.7.24", "SPF of {domain} could not be checked (DNS error); please retry later"
    ),
    Reason.SPF_PERMERROR: _Template(
        550, "5.7.24", "SPF record of {domain} is broken ({cause}); please fix it"
    ),
    Reason.SPF_PERMERROR_DEFERRED: _Template(
        451, "4.7.24", "SPF record of {domain} is broken ({cause}); please fix it"
    ),
    Reason.VIRUS: _Template(554, "5.7.1", "message contains a virus ({virus}); it was not sent"),
    Reason.SPAM: _Template(
        550, "5.7.1", "message rejected as spam (score {score}, limit {threshold})"
    ),
    Reason.SCANNER_ERROR: _Template(
        451, "4.7.1", "message could not be scanned ({scanner} unavailable); please retry later"
    ),
    Reason.INTERNAL_ERROR: _Template(451, "4.3.0", "temporary internal error, please retry later"),
    Reason.DATABASE_ERROR: _Template(451, "4.3.0", "temporary database error, please retry later"),
}

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_PARAM = 200


def _clean(value: object) -> str:
    """A parameter as one printable line of bounded length."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def reply_for(refusal: Refusal) -> Reply:
    template = _TEMPLATES[refusal.reason]
    params = {key: _clean(value) for key, value in refusal.params.items()}
    return Reply(template.code, template.dsn, template.text.format_map(params))

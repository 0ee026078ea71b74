"""What the milter answers at a stage: go on, accept, delay or refuse.

The reply's class is in its type: a :class:`TempFail` can only carry a 4xx
code and a 4.x.x enhanced code, a :class:`Reject` only 5xx and 5.x.x, and
both are checked when the value is made. The adapter maps a verdict to
libmilter in one ``match``; nothing else reads a reply code to decide
whether it delays or refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, assert_never

# RFC 3463: class.subject.detail
_ENHANCED_CODE = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")


class Action(StrEnum):
    """The event's ``action`` column and the decision line's ``action=``."""

    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@dataclass(frozen=True)
class HeaderChanges:
    """What an accept does to the message's headers."""

    remove: tuple[tuple[str, int], ...] = ()  # (name, 1-based occurrence), highest first
    add: tuple[tuple[str, str], ...] = ()  # appended after the last header
    prepend: tuple[tuple[str, str], ...] = ()  # before the first (a signature goes on top)


@dataclass(frozen=True)
class Continue:
    """Nothing to object to yet: the MTA goes on with the transaction."""


@dataclass(frozen=True)
class Accept:
    """The whole message is accepted, with these header changes (already applied)."""

    headers: HeaderChanges = field(default_factory=HeaderChanges)

    code = 250
    enhanced_code = "2.0.0"
    text = "accepted"


@dataclass(frozen=True)
class _Reply:
    """An answer with a code: made only with an enhanced code of its class, on one line."""

    code: int
    enhanced_code: str
    text: str

    def __post_init__(self) -> None:
        match = _ENHANCED_CODE.match(self.enhanced_code)
        if match is None or match.group(1) != str(self.code)[0]:
            raise ValueError(
                f"enhanced code {self.enhanced_code!r} is not of the class of {self.code}"
            )
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("a reply text is one line")


@dataclass(frozen=True)
class TempFail(_Reply):
    """4xx: the client keeps the message and tries again later."""

    code: Literal[421, 451, 452]


@dataclass(frozen=True)
class Reject(_Reply):
    """5xx: the message is refused for good; the client bounces it."""

    code: Literal[550, 552, 554]


Refused = TempFail | Reject
Verdict = Continue | Accept | TempFail | Reject

CONTINUE = Continue()


def action_of(verdict: Accept | Refused) -> Action:
    match verdict:
        case Accept():
            return Action.ACCEPT
        case TempFail():
            return Action.TEMPFAIL
        case Reject():
            return Action.REJECT
        case _:
            assert_never(verdict)

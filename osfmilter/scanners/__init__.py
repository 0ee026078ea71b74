"""Virus and spam scanners: one small client per engine, behind one contract.

A scanner reads the spooled message and returns a :class:`ScanVerdict`; it raises
:class:`ScannerError` when it cannot say (down, timed out, answered garbage,
refused the size). What a fault means for the mail is the session's
decision, by configuration, never the scanner's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from osfmilter.errors import DependencyError


class ScannerError(DependencyError):
    """The scanner could not give a verdict; ``backend`` names it."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend


@dataclass(frozen=True)
class ScanContext:
    """What an engine may use besides the message: who sends, from where, to whom."""

    identity: str  # the sender identity's label, e.g. "sasl:alice" or "server:192.0.2.0/24"
    login: str  # the SASL login, "" for a registered server
    client_ip: str
    helo: str
    sender: str
    recipients: tuple[str, ...]
    queue_id: str


@dataclass(frozen=True)
class ScanVerdict:
    """A scanner's answer: ``virus`` names a detection; spam engines give score and rules.

    Not the policy's decision (``osfmilter.verdict``), which is made from it.
    """

    virus: str = ""
    score: float | None = None
    rules: tuple[str, ...] = ()


class MessageSource(Protocol):
    """The message's bytes as a scanner reads them: the size up front, then in chunks."""

    size: int

    def chunks(self, size: int = ...) -> Iterator[bytes]: ...


class Scanner(Protocol):
    name: str

    def scan(self, message: MessageSource, context: ScanContext, timeout: float) -> ScanVerdict: ...

"""What the scanners said about one message: plain values, no threads, no sockets.

The policy reads a :class:`ScanReport`; osfmilter.scanners.service makes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from osfmilter.scanners import ScanVerdict


@dataclass(frozen=True)
class ScanOutcome:
    scanner: str
    verdict: ScanVerdict | None  # None: the scanner failed (see error)
    error: str
    seconds: float


@dataclass(frozen=True)
class ScanReport:
    outcomes: tuple[ScanOutcome, ...] = ()

    @property
    def virus(self) -> str:
        return next((o.verdict.virus for o in self.outcomes if o.verdict and o.verdict.virus), "")

    @property
    def spam(self) -> ScanVerdict | None:
        return next(
            (o.verdict for o in self.outcomes if o.verdict and o.verdict.score is not None), None
        )

    @property
    def failures(self) -> tuple[ScanOutcome, ...]:
        return tuple(o for o in self.outcomes if o.verdict is None)

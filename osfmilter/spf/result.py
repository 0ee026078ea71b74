"""What an SPF evaluation found: plain values the policy decides on without DNS."""

from __future__ import annotations

from dataclasses import dataclass

# Worst first: the result recorded for a domain is the worst over the relay's IPs.
SEVERITY = ("fail", "temperror", "permerror", "softfail", "neutral", "none", "pass")


@dataclass(frozen=True)
class SpfOutcome:
    domain: str
    result: str  # the worst over the outbound IPs
    explanation: str
    per_ip: tuple[tuple[str, str, str], ...]  # (ip, result, explanation)

    @property
    def failing_ip(self) -> str:
        return next((ip for ip, result, _ in self.per_ip if result == self.result), "")

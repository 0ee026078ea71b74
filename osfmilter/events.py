"""One decision as it is stored: the columns of an event row (docs/records.rst)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from osfmilter.model import Identity


@dataclass(frozen=True)
class EventRecord:
    """The columns of one event row (docs/records.rst, 'Event rows'), before it is stored."""

    at: datetime
    node: str
    queue_id: str
    stage: str
    client_ip: str
    identity: Identity | None
    envelope_sender: str
    header_from_domain: str
    rcpt_count: int
    size: int
    action: str
    reason: str
    smtp_code: int | None
    enhanced_code: str
    spam_score: float | None = None
    spam_rules: str = ""
    virus_name: str = ""
    spf_result: str = ""
    checks: str = ""  # the policy steps that ran, comma-separated; a refusal's step last

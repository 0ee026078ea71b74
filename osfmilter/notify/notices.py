"""What a notification says, built where its cause is decided; no I/O.

A :class:`Notice` is one outbox row: the storage writes it in the same
transaction as its cause. :class:`NoticePolicy` holds the operator's
``[notify] disabled`` kinds and remembers the once-a-day notices this
process has written, so that a refusal costs no extra statement after the
first of its kind and day (the database's ``dedup_key`` still holds across
processes and nodes).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from osfmilter.model import ServerState
from osfmilter.notify.kinds import NoticeType


def _event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Notice:
    type: NoticeType
    at: datetime
    customer_id: int
    identity: str  # server:<network> or sasl:<login>; "" when none
    details: Mapping[str, object]  # plain JSON values
    # Set for a notice sent once per month or day: a second one is not written.
    dedup_key: str | None = None
    id: str = field(default_factory=_event_id)

    def details_json(self) -> str:
        plain = {key: _readable(value) for key, value in self.details.items()}
        return json.dumps(plain, sort_keys=True, ensure_ascii=False)


def _readable(value: object) -> object:
    """Text from the network as text every driver and mailer takes: pymilter's
    surrogate-escaped bytes as ``\\xNN`` (as storage.db.fit stores them)."""
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class NoticePolicy:
    """The notices the operator wants, and the once-a-day ones this process wrote already."""

    # A bound on what is remembered: past it, the database's dedup_key decides alone.
    MAX_REMEMBERED = 10_000

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.disabled = frozenset(disabled)
        self._written: set[str] = set()
        self._lock = threading.Lock()

    def wants(self, notice_type: NoticeType) -> bool:
        return notice_type.kind not in self.disabled and str(notice_type) not in self.disabled

    def first(self, notice: Notice) -> bool:
        """Not yet written by this process (a notice without a dedup_key always is new)."""
        if not self.wants(notice.type):
            return False
        if notice.dedup_key is None:
            return True
        with self._lock:
            return notice.dedup_key not in self._written

    def written(self, notice: Notice) -> None:
        if notice.dedup_key is None:
            return
        with self._lock:
            if len(self._written) >= self.MAX_REMEMBERED:
                self._written.clear()
            self._written.add(notice.dedup_key)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


RELEASE = "only the relay's operator can release it"


@dataclass(frozen=True)
class StateFacts:
    """What the reputation knows when an identity's state changes."""

    customer_id: int
    identity: str
    at: datetime
    old: ServerState
    new: ServerState
    reason: str
    actor: str
    last_incident_at: datetime | None
    detections: int  # spam/virus detections inside the auto-block window
    recovery: timedelta


def state_notice(facts: StateFacts) -> Notice:
    """An identity's state changed: to verdacht (why, and when it recovers), to onveilig
    (how to get it released) or back to veilig."""
    details: dict[str, object] = {
        "old_state": str(facts.old),
        "new_state": str(facts.new),
        "reason": facts.reason,
        "by": facts.actor,
    }
    if facts.new is ServerState.VERDACHT:
        since = max(facts.at, facts.last_incident_at or facts.at)
        details["recovers_at"] = _iso(since + facts.recovery)
        details["detections"] = facts.detections
        details["effect"] = "its mail is delayed to the plan's low rate until it recovers"
    elif facts.new is ServerState.ONVEILIG:
        details["detections"] = facts.detections
        details["effect"] = "every message is refused (554 5.7.1)"
        details["release"] = RELEASE
    else:
        details["effect"] = "the plan's normal limits apply again"
    return Notice(
        NoticeType(f"state.{facts.new}"), facts.at, facts.customer_id, facts.identity, details
    )


def _threshold_key(notice_type: NoticeType, customer_id: int, domain: str, month: str) -> str:
    return f"{notice_type}:{month}:{customer_id}:{domain}"


def _volume_details(
    domain: str, month: str, used: int, allowance: int, **more: object
) -> dict[str, object]:
    return {
        "domain": domain or "(unknown senders)",
        "month": month,
        "used_bytes": used,
        "allowance_bytes": allowance,
        "percent": round(100 * used / allowance, 1) if allowance else 100.0,
        **more,
    }


def volume_crossings(
    *,
    customer_id: int,
    identity: str,
    domain: str,
    month: str,
    before: int,
    after: int,
    allowance: int,
    at: datetime,
) -> list[Notice]:
    """The thresholds (80 %, 100 % of the allowance) an accepted message reached; exactly
    reaching one counts. Integer arithmetic: no rounding decides."""
    notices = []
    for notice_type, percent in ((NoticeType.VOLUME_80, 80), (NoticeType.VOLUME_100, 100)):
        line = percent * allowance
        if before * 100 < line <= after * 100:
            notices.append(
                Notice(
                    notice_type,
                    at,
                    customer_id,
                    identity,
                    _volume_details(domain, month, after, allowance, threshold=percent),
                    _threshold_key(notice_type, customer_id, domain, month),
                )
            )
    return notices


def volume_refused(
    *,
    customer_id: int,
    identity: str,
    domain: str,
    month: str,
    used: int,
    allowance: int,
    at: datetime,
) -> Notice:
    """A message did not fit into what is left of the allowance: the 100 % notice, if not
    sent this month already (it is the same notice, so at most one of the two goes)."""
    return Notice(
        NoticeType.VOLUME_100,
        at,
        customer_id,
        identity,
        _volume_details(
            domain,
            month,
            used,
            allowance,
            threshold=100,
            effect="messages that do not fit are delayed (451 4.7.1) until the month ends",
        ),
        _threshold_key(NoticeType.VOLUME_100, customer_id, domain, month),
    )


def first_refusal(
    notice_type: NoticeType,
    *,
    customer_id: int,
    identity: str,
    at: datetime,
    details: Mapping[str, object],
) -> Notice:
    """A customer's first refusal of this kind today (UTC)."""
    key = f"{notice_type}:{at.date().isoformat()}:{customer_id}"
    return Notice(notice_type, at, customer_id, identity, dict(details), key)

"""``osfmilter notify run``: delivers the outbox, at least once, with backoff.

Each pass first turns the relay refusals the milter recorded since the last
pass into notices (storage.outbox.derive_unregistered), then gives up
deliveries older than ``[notify] max_age_hours``, claims the due ones
(storage.outbox.claim: a lease, taken ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several senders on several nodes never send one at the same
time), sends each, and marks it sent, or due again after an exponential
backoff, or failed once it is too old. A sender that dies between sending
and marking leaves the delivery to be sent again when its lease ends: a
receiver drops the duplicate by the event id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine

from osfmilter.addresses import parse_host_port
from osfmilter.clock import Clock
from osfmilter.config import Config
from osfmilter.notify import email, webhook
from osfmilter.notify.notices import NoticePolicy
from osfmilter.notify.webhook import DeliveryFailed
from osfmilter.storage import outbox
from osfmilter.storage.outbox import Due

log = logging.getLogger("osfmilter.notify")

# Deliveries claimed per pass: enough to keep up, few enough that a lease covers them.
BATCH = 20


@dataclass(frozen=True)
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.failed


class NotifyMetrics:
    """The sender's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Gauge(
            "osfmilter_notification_deliveries",
            "Notification deliveries in the database, by state (pending, sent, failed)",
            ["state"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "osfmilter_notification_oldest_pending_seconds",
            "Age of the oldest notification with a pending delivery; 0 when none",
            registry=self.registry,
        )
        self.attempts = Counter(
            "osfmilter_notification_attempts",
            "Delivery attempts of this process, by channel and outcome (sent, retry, failed)",
            ["channel", "outcome"],
            registry=self.registry,
        )


class Sender:
    def __init__(self, engine: Engine, config: Config, clock: Clock) -> None:
        self.engine = engine
        self.settings = config.notify
        self.contact = config.replies.contact
        self.clock = clock
        self.metrics = NotifyMetrics()
        self.notices = NoticePolicy(self.settings.disabled)
        self.smtp = parse_host_port(self.settings.smtp)
        self.max_age = timedelta(hours=self.settings.max_age_hours)
        # How long a claim holds its deliveries: longer than one send takes (an
        # SMTP exchange is a few steps of at most ``timeout`` each). A pass
        # sends only in the first half of it (run_once), so no delivery is
        # claimed by another sender while this one may still be sending it.
        self.lease = timedelta(seconds=max(6 * self.settings.timeout, 10.0))

    def run_once(self) -> PassResult:
        now = self.clock.now()
        outbox.derive_unregistered(self.engine, self.notices)
        given_up = outbox.give_up_stale(self.engine, now - self.max_age)
        if given_up:
            log.warning("%d notification deliveries given up: older than max_age", given_up)
            self.metrics.attempts.labels("any", "failed").inc(given_up)
        sent = retried = failed = 0
        claimed_at = self.clock.monotonic()
        for due in outbox.claim(self.engine, now, self.lease, BATCH):
            if self.clock.monotonic() - claimed_at > self.lease.total_seconds() / 2:
                break  # the rest wait for their lease to end, then go out
            outcome = self._deliver(due)
            sent += outcome == "sent"
            retried += outcome == "retry"
            failed += outcome == "failed"
            self.metrics.attempts.labels(due.channel, outcome).inc()
        self.observe()
        return PassResult(sent, retried, failed + given_up)

    def observe(self) -> None:
        counts = outbox.counts(self.engine)
        for state in ("pending", "sent", "failed"):
            self.metrics.deliveries.labels(state).set(getattr(counts, state))
        age = 0.0
        if counts.oldest_pending is not None:
            age = max(0.0, (self.clock.now() - counts.oldest_pending).total_seconds())
        self.metrics.oldest_pending.set(age)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until stop is set; a pass that found work is followed at once."""
        while not stop.is_set():
            try:
                result = self.run_once()
            except Exception as exc:  # noqa: BLE001 - the database may come back
                log.error("notification pass failed: %s", exc)
                result = PassResult()
            if result.claimed < BATCH:
                stop.wait(self.settings.poll_seconds)

    def _deliver(self, due: Due) -> str:
        try:
            self._send(due)
        except DeliveryFailed as exc:
            return self._failed(due, str(exc))
        except Exception as exc:  # a bug or odd data: the other deliveries still go out
            log.exception(
                "notification %s by %s: unexpected error", due.notification_id, due.channel
            )
            return self._failed(due, f"{type(exc).__name__}: {exc}")
        self._mark_sent(due)
        log.info(
            "notification %s (%s) sent by %s to %s",
            due.notification_id,
            due.type,
            due.channel,
            due.customer,
        )
        return "sent"

    def _mark_sent(self, due: Due) -> None:
        outbox.mark_sent(self.engine, due.delivery_id, self.clock.now())

    def _send(self, due: Due) -> None:
        if due.channel == "webhook":
            payload = webhook.body(
                due.notification_id,
                due.type,
                due.at.isoformat(timespec="seconds"),
                due.customer,
                due.identity,
                due.details,
            )
            timestamp = int(self.clock.now().timestamp())
            headers = webhook.headers(due.notification_id, due.webhook_secret, timestamp, payload)
            webhook.post(
                due.webhook_url,
                payload,
                headers,
                self.settings.timeout,
                public_only=due.webhook_public_only,
            )
            return
        if not due.contacts:
            raise DeliveryFailed("the customer has no contacts any more")
        if not self.settings.sender:
            raise DeliveryFailed("[notify] sender is not set: no From: address for the e-mails")
        message = email.compose(
            sender=self.settings.sender,
            recipients=due.contacts,
            event_id=due.notification_id,
            notice_type=due.type,
            at=due.at,
            customer=due.customer,
            identity=due.identity,
            details=due.details,
            contact=self.contact,
            now=self.clock.now(),
        )
        email.send(self.smtp, message, self.settings.timeout)

    def _failed(self, due: Due, error: str) -> str:
        now = self.clock.now()
        retry_at = now + self.backoff(due.attempts)
        too_old = retry_at - due.at >= self.max_age
        outbox.mark_failed(self.engine, due.delivery_id, error, None if too_old else retry_at)
        if too_old:
            log.error(
                "notification %s (%s) to %s by %s given up after %d attempts: %s",
                due.notification_id,
                due.type,
                due.customer,
                due.channel,
                due.attempts,
                error,
            )
            return "failed"
        log.warning(
            "notification %s (%s) to %s by %s failed (attempt %d), again at %s: %s",
            due.notification_id,
            due.type,
            due.customer,
            due.channel,
            due.attempts,
            _iso(retry_at),
            error,
        )
        return "retry"

    def backoff(self, attempts: int) -> timedelta:
        """base × 2^(attempts − 1), at most the configured maximum."""
        seconds = self.settings.backoff_base_seconds * 2 ** min(max(attempts - 1, 0), 40)
        return timedelta(seconds=min(seconds, self.settings.backoff_max_seconds))


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")

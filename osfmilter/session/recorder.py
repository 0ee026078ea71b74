"""Everything a decision leaves behind: the event row, the decision line, the metrics,
the reputation's feed, and the header an accepted message carries."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from osfmilter.addresses import IPAddress
from osfmilter.errors import DependencyError, UnknownIdentity
from osfmilter.events import EventRecord
from osfmilter.limits.volume import month_of
from osfmilter.model import ServerState, Stage
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import Notice, first_refusal, volume_refused
from osfmilter.policy.context import TransactionState
from osfmilter.policy.steps.rate_window import ALL_MAIL
from osfmilter.replies import (
    ContentTimedOut,
    ForeignDomain,
    RateLimited,
    Reason,
    Refusal,
    SpamScore,
    VirusFound,
    VolumeExhausted,
)
from osfmilter.reputation.transitions import IncidentKind
from osfmilter.session.services import Services
from osfmilter.verdict import Accept, HeaderChanges, Refused, action_of

log = logging.getLogger("osfmilter.session")

# Our own header: any copy already in a message is a forgery and is removed.
OWN_HEADER = "X-Osfmilter"


@dataclass
class Connection:
    """The SMTP client as connect and HELO told it."""

    client: str = ""  # as the MTA gave it
    address: IPAddress | None = None  # None when it is not an IP address
    helo: str = ""

    @property
    def client_ip(self) -> str:
        return str(self.address or self.client)


class Recorder:
    """Records one connection's decisions; a refusal that must be recorded fails loudly."""

    def __init__(self, services: Services, connection: Connection) -> None:
        self.services = services
        self.connection = connection

    # Refusals ---------------------------------------------------------------

    def refused(self, stage: Stage, tx: TransactionState, refusal: Refusal, reply: Refused) -> None:
        """A policy refusal: stored (or the error raised), logged, fed to the reputation."""
        if isinstance(refusal, ContentTimedOut):
            log.warning(
                "qid=%s end of message took %.1f s, about as long as the MTA waits "
                "(milter.content_timeout): not accepted",
                tx.queue_id or "-",
                refusal.seconds,
            )
        event = self.event(stage, tx, refusal.reason, reply)
        self.services.events.record(event, _notices(tx, refusal, event))
        self.log(event, tx)
        self._feed_reputation(tx, refusal)

    def fault(
        self, stage: Stage, tx: TransactionState, refusal: Refusal, reply: Refused, *, store: bool
    ) -> None:
        """A fault's decision: logged, and stored if it can be (its answer stands anyway)."""
        event = self.event(stage, tx, refusal.reason, reply)
        if store:
            try:
                self.services.events.record(event)
            except Exception as exc:  # noqa: BLE001 - the fault's 451 must still be answered
                log.error("event for qid=%s not stored: %s", tx.queue_id or "-", exc)
        self.log(event, tx)

    def _feed_reputation(self, tx: TransactionState, refusal: Refusal) -> None:
        """Detections and usage-rule refusals count against the identity.

        See docs/states.rst, 'What counts against an identity'.
        """
        identity = tx.identity
        if identity is None:
            return
        reputation = self.services.reputation
        try:
            match refusal:
                case VirusFound(virus):
                    reputation.record_incident(
                        identity.kind, identity.id, IncidentKind.VIRUS, virus
                    )
                case SpamScore(score):
                    reputation.record_incident(
                        identity.kind, identity.id, IncidentKind.SPAM, f"score {score:g}"
                    )
                case VolumeExhausted() | ForeignDomain():
                    reputation.record_limit_refusal(identity.kind, identity.id)
                case RateLimited() if not _suspicion_limit(tx):
                    reputation.record_limit_refusal(identity.kind, identity.id)
        except (DependencyError, UnknownIdentity) as exc:
            # The refusal stands; only its weight in the reputation is lost.
            log.error(
                "reputation of %s not updated after %s: %s", identity.label, refusal.reason, exc
            )

    # Accepts -----------------------------------------------------------------

    def header_changes(self, tx: TransactionState) -> HeaderChanges:
        """Forged copies of our header out, ours in."""
        return HeaderChanges(
            remove=tuple(sorted(tx.forged_headers, key=lambda h: -h[1])),
            add=((OWN_HEADER, self._stamp(tx)),),
        )

    def _stamp(self, tx: TransactionState) -> str:
        """Our header on accepted mail: who relayed it and what the scans said."""
        spam = tx.scan.spam
        if any(f.scanner == "clamav" for f in tx.scan.failures):
            virus = "unscanned"
        else:
            virus = "clean" if self.services.scans.virus is not None else "off"
        parts = [
            f"node={self.services.node}",
            f"qid={tx.queue_id or '-'}",
            f"virus={virus}",
            f"spam={spam.score:g}" if spam and spam.score is not None else "spam=-",
            f"spf={tx.spf.result if tx.spf else '-'}",
        ]
        return "; ".join(parts)

    def spf_checked(self, tx: TransactionState) -> None:
        """The SPF result counted; a broken record logged, for the operator to tell its owner."""
        if tx.spf is None:
            return
        self.services.metrics.spf_results.labels(tx.spf.result).inc()
        if tx.spf.result == "permerror":
            log.warning(
                "qid=%s SPF permerror for %s: %s",
                tx.queue_id or "-",
                tx.spf.domain,
                tx.spf.explanation,
            )

    def let_through_unscanned(self, tx: TransactionState) -> None:
        """Scanners that failed while configured to let mail pass: counted, as fail-open."""
        for failure in tx.scan.failures:
            self.services.metrics.fail_open.labels(failure.scanner).inc()

    # Both ---------------------------------------------------------------------

    def event(
        self, stage: Stage, tx: TransactionState, reason: Reason, reply: Accept | Refused
    ) -> EventRecord:
        spam = tx.scan.spam
        return EventRecord(
            at=self.services.clock.now(),
            node=self.services.node,
            queue_id=tx.queue_id,
            stage=stage,
            client_ip=self.connection.client_ip,
            identity=tx.identity,
            envelope_sender=tx.envelope.sender,
            header_from_domain=tx.header_from_domain,
            rcpt_count=len(tx.recipients),
            size=tx.size or (tx.envelope.declared_size or 0),
            action=action_of(reply),
            reason=reason,
            smtp_code=reply.code,
            enhanced_code=reply.enhanced_code,
            spam_score=spam.score if spam else None,
            spam_rules=",".join(spam.rules) if spam else "",
            virus_name=tx.scan.virus,
            spf_result=tx.spf.result if tx.spf else "",
            checks=",".join(tx.checks),
        )

    def log(self, record: EventRecord, tx: TransactionState) -> None:
        """The decision line and the decision metrics."""
        metrics = self.services.metrics
        metrics.decisions.labels(record.action, record.reason).inc()
        if record.reason == Reason.ACCEPTED:
            metrics.accepted_messages.inc()
            metrics.accepted_bytes.inc(record.size * record.rcpt_count)
        identity = tx.identity
        self.services.decisions.decision(
            {
                "qid": record.queue_id or "-",
                "stage": record.stage,
                "action": record.action,
                "reason": record.reason,
                "code": record.smtp_code,
                "enhanced_code": record.enhanced_code,
                "client": record.client_ip,
                "helo": self.connection.helo,
                "identity": identity.label if identity else "",
                "customer": identity.customer if identity else "",
                "from": f"<{tx.envelope.sender}>",
                "header_from": tx.header_from_domain,
                "rcpts": record.rcpt_count,
                "size": record.size,
                "spf": record.spf_result,
                "virus": record.virus_name,
                "spam_score": record.spam_score,
                "unscanned": ",".join(f.scanner for f in tx.scan.failures),
                "checks": record.checks,
            }
        )


def _notices(tx: TransactionState, refusal: Refusal, event: EventRecord) -> list[Notice]:
    """What the customer is told about a refusal: the first of its kind today (another
    customer's domain), the volume allowance reached (once a month). The store writes a
    notice only the first time, in the event's transaction."""
    identity = tx.identity
    if identity is None:
        return []
    match refusal:
        case ForeignDomain(domain, in_header, hint):
            return [
                first_refusal(
                    NoticeType.REFUSAL_FOREIGN_DOMAIN,
                    customer_id=identity.customer_id,
                    identity=identity.label,
                    at=event.at,
                    details={
                        "domain": domain,
                        "where": "From: header" if in_header else "envelope sender",
                        "reason": str(refusal.reason),
                        "answer": f"{event.smtp_code} {event.enhanced_code}",
                        "what_to_do": hint,
                    },
                )
            ]
        case VolumeExhausted(domain, used, allowance):
            return [
                volume_refused(
                    customer_id=identity.customer_id,
                    identity=identity.label,
                    domain=domain,
                    month=month_of(event.at),
                    used=used,
                    allowance=allowance,
                    at=event.at,
                )
            ]
    return []


def _suspicion_limit(tx: TransactionState) -> bool:
    """The verdacht server's own low limit: counting it would keep the server verdacht."""
    assert tx.identity is not None
    return (
        tx.identity.state is ServerState.VERDACHT
        and tx.rate_denied is not None
        and tx.rate_denied.bucket == ALL_MAIL
    )

"""One SMTP connection as the milter sees it: gather facts, ask the policy, record.

This is where the pure policy meets the database and the log. It knows
nothing of libmilter: the adapter calls one method per SMTP stage and turns
the returned :class:`~osfmilter.replies.Reply` (or ``None``: go on / accept)
into a milter response.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from osfmilter.addresses import IPAddress, normalize_client
from osfmilter.clock import Clock
from osfmilter.config import Config, Mode, PlanLimits
from osfmilter.decisionlog import DecisionLog
from osfmilter.errors import DependencyError, StorageError, TooLate, UnknownIdentity
from osfmilter.limits.rate import (
    Bucket,
    CommitsInTransaction,
    RateDenied,
    RateLimiter,
    Reservation,
)
from osfmilter.limits.volume import VolumeCharge, VolumeDenied, month_of
from osfmilter.metrics import Metrics
from osfmilter.model import (
    Identity,
    IdentityKind,
    ServerState,
    Stage,
    Transaction,
    domain_of,
    is_known_sender,
    matching_domain,
)
from osfmilter.policy import (
    BODY_CHECKS,
    EOM_CHECKS,
    MAIL_CHECKS,
    RATE_CHECKS,
    RCPT_CHECKS,
    SCAN_CHECKS,
    SPF_CHECKS,
    VOLUME_CHECKS,
    BodyFacts,
    EomFacts,
    MailFacts,
    RateFacts,
    RcptFacts,
    ScanFacts,
    SpfFacts,
    VolumeFacts,
    first_refusal,
)
from osfmilter.policy.checks import ALL_MAIL, UNKNOWN_SENDERS, rate_buckets
from osfmilter.replies import Action, Reason, Refusal, Reply, reply_for
from osfmilter.reputation.transitions import IncidentKind
from osfmilter.scanners import ScanContext
from osfmilter.scanners.service import ScanReport, ScanService
from osfmilter.spf.checker import SpfChecker
from osfmilter.spf.result import SpfOutcome
from osfmilter.spool import Spool
from osfmilter.storage.store import EventRecord

log = logging.getLogger(__name__)

ACCEPTED = Reply(250, "2.0.0", "accepted")
# Our own header: any copy already in a message is a forgery and is removed.
OWN_HEADER = "X-Osfmilter"
# An accept must be committed this long before the MTA stops waiting (at most
# a tenth of [milter] content_timeout): the commit and the answer still take
# a moment after the last look at the clock.
ACCEPT_MARGIN = 1.0


@dataclass(frozen=True)
class HeaderChanges:
    """What the adapter must do to an accepted message's headers."""

    remove: tuple[tuple[str, int], ...] = ()  # (name, 1-based occurrence), highest first
    add: tuple[tuple[str, str], ...] = ()


def _leave_headers(changes: HeaderChanges) -> None:
    """For callers that apply no header changes (tests of the session alone)."""


# Parsing a hostile From: header costs time; the address is near its start.
_FROM_PARSE_LIMIT = 4096


class Directory(Protocol):
    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None: ...

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None: ...


class Reputation(Protocol):
    def observe(self, kind: IdentityKind, identity_id: int) -> ServerState: ...

    def record_incident(
        self, kind: IdentityKind, identity_id: int, incident_kind: IncidentKind, detail: str = ""
    ) -> ServerState: ...

    def record_limit_refusal(self, kind: IdentityKind, identity_id: int) -> ServerState: ...


class Recorder(Protocol):
    def record(self, record: EventRecord) -> None: ...

    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Any], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None: ...

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None: ...


@dataclass(frozen=True)
class Services:
    """Everything outside the session, injected so tests can replace it."""

    config: Config
    directory: Directory
    recorder: Recorder
    limiter: RateLimiter
    scans: ScanService
    spf: SpfChecker | None
    reputation: Reputation
    metrics: Metrics
    clock: Clock
    decisions: DecisionLog
    node: str


@dataclass
class _Transaction:
    facts: Transaction
    identity: Identity | None
    limits: PlanLimits
    queue_id: str
    recipients: list[str] = field(default_factory=list)
    recipients_refused: int = 0
    header_from_domains: list[str] = field(default_factory=list)
    spool: Spool | None = None
    # Rate slots held for this message until it is accepted or given up.
    reservations: list[Reservation] = field(default_factory=list)
    counted_as_unknown: bool = False
    scan: ScanReport = field(default_factory=ScanReport)
    spf: SpfOutcome | None = None
    rate_denied: RateDenied | None = None
    # Occurrences of our own header the client sent, by their name as sent.
    forged_headers: list[tuple[str, int]] = field(default_factory=list)
    header_counts: dict[str, int] = field(default_factory=dict)
    # The answer that ended the transaction at MAIL; repeated if the MTA goes on anyway.
    refused: Reply | None = None
    # When the milter last answered during the content phase (monotonic): the
    # MTA sends the end of message right after, and starts its clock then.
    content_answered: float | None = None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool else 0

    @property
    def header_from_domain(self) -> str:
        return self.header_from_domains[0] if self.header_from_domains else ""

    def envelope_sender_known(self) -> bool:
        assert self.identity is not None
        return is_known_sender(domain_of(self.facts.sender), self.identity.scanned_domains)

    def sending_domains(self) -> list[str]:
        """The From: domains, or the envelope sender's when there is no From: header."""
        return self.header_from_domains or [domain_of(self.facts.sender)]

    def header_sender_known(self) -> bool:
        """Known only if every From: domain is (a forged second From: makes it unknown)."""
        if self.identity is None:
            return False
        scanned = self.identity.scanned_domains
        return all(is_known_sender(d, scanned) for d in self.sending_domains())


class MilterSession:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.client = ""
        self.address: IPAddress | None = None
        self.helo = ""
        self._tx: _Transaction | None = None
        # Set when a message is accepted; the adapter applies it.
        self.header_changes = HeaderChanges()
        # A fault before MAIL: every transaction of the connection is 451.
        self._connection_fault = False

    @property
    def inbound(self) -> bool:
        return self.services.config.mode is Mode.INBOUND

    # Connection ------------------------------------------------------------

    def connect(self, client: str) -> None:
        """Only note the client: Postfix would hide a connect-stage reply's text."""
        self.client = client
        self.address = normalize_client(client)

    def hello(self, name: str) -> None:
        self.helo = name

    # Transaction -----------------------------------------------------------

    def mail(self, sender: str, params: Sequence[str], login: str, queue_id: str) -> Reply | None:
        self.abort()
        facts = Transaction(
            sender=sender.strip().strip("<>"), declared_size=_size_param(params), login=login
        )
        tx = _Transaction(facts, None, self.services.config.plans.free, queue_id)
        self._tx = tx
        if self._connection_fault:
            # What connect or HELO could not note (the client's address...)
            # must not turn into a refusal, let alone a 5xx.
            tx.refused = self._decide_fault(Stage.CONNECT, tx)
            return tx.refused
        if self.inbound:
            tx.spool = Spool()
            return None
        reply = self._guarded(Stage.MAIL, lambda: self._mail(tx))
        tx.refused = reply
        return reply

    def _mail(self, tx: _Transaction) -> Reply | None:
        services = self.services
        tx.identity = services.directory.find_identity(self.address, tx.facts.login)
        if tx.identity is not None:
            tx.limits = services.config.plans.limits(tx.identity.plan)
            if tx.identity.state is ServerState.VERDACHT:
                # Recovery is due 48 h after the last incident, whether or not
                # anyone was looking; observing records it at its due time.
                state = services.reputation.observe(tx.identity.kind, tx.identity.id)
                tx.identity = replace(tx.identity, state=state)
        facts = MailFacts(
            client=str(self.address or self.client or "unknown"),
            transaction=tx.facts,
            identity=tx.identity,
            limits=tx.limits,
            replies=services.config.replies,
        )
        refusal = first_refusal(MAIL_CHECKS, facts)
        if refusal is None:
            assert tx.identity is not None
            known = tx.envelope_sender_known()
            tx.counted_as_unknown = not known
            refusal = self._reserve(tx, rate_buckets(tx.limits, tx.identity.state, known))
        if refusal is None and services.spf is not None:
            refusal = self._check_spf(tx, services.spf)
        if refusal is not None:
            return self._refuse(Stage.MAIL, tx, refusal)
        tx.spool = Spool()
        return None

    def _check_spf(self, tx: _Transaction, checker: SpfChecker) -> Refusal | None:
        tx.spf = checker.check(tx.facts.sender, self.helo)
        self.services.metrics.spf_results.labels(tx.spf.result).inc()
        if tx.spf.result == "permerror":
            log.warning(
                "qid=%s SPF permerror for %s: %s",
                tx.queue_id or "-",
                tx.spf.domain,
                tx.spf.explanation,
            )
        return first_refusal(SPF_CHECKS, SpfFacts(tx.spf, self.services.config.spf))

    def _reserve(self, tx: _Transaction, buckets: Sequence[Bucket]) -> Refusal | None:
        assert tx.identity is not None
        outcome = self.services.limiter.reserve(tx.identity.label, buckets)
        if isinstance(outcome, Reservation):
            tx.reservations.append(outcome)
        return self._rate_refusal(tx, outcome)

    def _renew_due_reservations(self, tx: _Transaction) -> Refusal | None:
        """A transaction that outlived its reservations is admitted again, like a new one.

        MAIL to the end of message may take longer than [rates]
        reservation_ttl; by then the slots may have been pruned and given to
        other messages, and counting this one anyway could pass the limit.
        A denied renewal keeps the old reservation in the list, so that
        abort() gives back whatever is left of it.
        """
        now = self.services.clock.now().timestamp()
        # The accept commits within content_timeout of now or not at all.
        horizon = self.services.config.milter.content_timeout
        for index, reservation in enumerate(tx.reservations):
            if not reservation.due_for_renewal(now + horizon):
                continue
            outcome = self.services.limiter.renew(reservation)
            if isinstance(outcome, Reservation):
                tx.reservations[index] = outcome
            elif (refusal := self._rate_refusal(tx, outcome)) is not None:
                return refusal
        return None

    def _rate_refusal(self, tx: _Transaction, outcome: Reservation | RateDenied) -> Refusal | None:
        assert tx.identity is not None
        if isinstance(outcome, RateDenied):
            tx.rate_denied = outcome
        window = self.services.config.rates.window
        return first_refusal(RATE_CHECKS, RateFacts(outcome, tx.identity, window))

    def rcpt(self, recipient: str, queue_id: str) -> Reply | None:
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        if tx.refused is not None:
            return tx.refused
        if self.inbound:
            tx.recipients.append(recipient)
            return None
        return self._guarded(Stage.RCPT, lambda: self._rcpt(tx, recipient))

    def _rcpt(self, tx: _Transaction, recipient: str) -> Reply | None:
        known = tx.envelope_sender_known()
        facts = RcptFacts(len(tx.recipients), known, tx.limits)
        refusal = first_refusal(RCPT_CHECKS, facts)
        if refusal is None:
            tx.recipients.append(recipient)
            return None
        tx.recipients_refused += 1
        if tx.recipients_refused == 1:
            # One decision per transaction, however many recipients it refuses.
            return self._refuse(Stage.RCPT, tx, refusal)
        return reply_for(refusal)

    def header(self, name: str, value: str) -> None:
        tx = self._require_tx()
        if tx.spool is None:  # refused at MAIL
            return
        tx.spool.header(name, value)
        lowered = name.lower()
        if lowered == "from":
            tx.header_from_domains += _header_from_domains(value)
        elif lowered == OWN_HEADER.lower():
            tx.header_counts[lowered] = tx.header_counts.get(lowered, 0) + 1
            tx.forged_headers.append((name, tx.header_counts[lowered]))

    def end_of_headers(self) -> None:
        tx = self._require_tx()
        if tx.spool is not None:
            tx.spool.end_of_headers()
        tx.content_answered = self.services.clock.monotonic()

    def body(self, chunk: bytes) -> Reply | None:
        tx = self._require_tx()
        if tx.refused is not None or tx.spool is None:
            return tx.refused
        try:
            tx.spool.body(chunk)
        except Exception:
            # The spool's disk (ENOSPC, EIO): one decision now, as for a header.
            log.exception("qid=%s message not spooled", tx.queue_id or "-")
            self.fault(Stage.BODY)
            return tx.refused
        if self.inbound:
            return None
        refusal = first_refusal(BODY_CHECKS, BodyFacts(tx.size, tx.limits))
        if refusal is None:
            tx.content_answered = self.services.clock.monotonic()
            return None
        try:
            return self._guarded(Stage.BODY, lambda: self._refuse(Stage.BODY, tx, refusal))
        finally:
            self.abort()

    def end_of_message(
        self,
        queue_id: str,
        edit_headers: Callable[[HeaderChanges], None] = _leave_headers,
    ) -> Reply | None:
        """The decision on the whole message; None when it is accepted.

        An accepted message's header changes go to ``edit_headers`` before
        the accept is committed: a message is counted if and only if its
        final answer is an accept, so nothing that can still fail may come
        after the commit.
        """
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        self.header_changes = HeaderChanges()
        if tx.refused is not None:
            self.abort()
            return tx.refused
        # Measured from our last content answer, not from now: a milter frozen
        # before it even read the end of message must know the MTA gave up.
        started = tx.content_answered or self.services.clock.monotonic()
        try:
            if self.inbound:
                self._record_inbound(tx)
                return None
            return self._guarded(Stage.EOM, lambda: self._end_of_message(tx, started, edit_headers))
        finally:
            self.abort()

    def _end_of_message(
        self, tx: _Transaction, started: float, edit_headers: Callable[[HeaderChanges], None]
    ) -> Reply | None:
        assert tx.identity is not None
        known = tx.header_sender_known()
        facts = EomFacts(tx.size, len(tx.recipients), known, tx.limits)
        refusal = first_refusal(EOM_CHECKS, facts)
        if refusal is None and not known and not tx.counted_as_unknown:
            # RCPT time trusted the envelope; the header says unknown sender,
            # so the message must also fit the unknown senders' window.
            buckets = [
                b
                for b in rate_buckets(tx.limits, tx.identity.state, False)
                if b.name == UNKNOWN_SENDERS
            ]
            refusal = self._reserve(tx, buckets)
        if refusal is None:
            refusal = self._scan(tx)
        if refusal is None:
            refusal = self._renew_due_reservations(tx)
        if refusal is not None:
            return self._refuse(Stage.EOM, tx, refusal)
        timeout = self.services.config.milter.content_timeout
        deadline = started + timeout - min(ACCEPT_MARGIN, timeout / 10)

        def in_time() -> bool:
            return self.services.clock.monotonic() < deadline

        if not in_time():
            return self._too_late(tx, started)
        return self._accept(tx, known, edit_headers, in_time, started)

    def _too_late(self, tx: _Transaction, started: float) -> Reply:
        # The MTA stopped waiting (this process was frozen, swapping, the
        # database slow...) and has answered the client 4xx itself; the
        # message will come again, so this one must not count.
        took = self.services.clock.monotonic() - started
        log.warning(
            "qid=%s end of message took %.1f s, about as long as the MTA waits "
            "(milter.content_timeout): not accepted",
            tx.queue_id or "-",
            took,
        )
        return self._refuse(Stage.EOM, tx, Refusal(Reason.INTERNAL_ERROR))

    def _accept(
        self,
        tx: _Transaction,
        known: bool,
        edit_headers: Callable[[HeaderChanges], None],
        in_time: Callable[[], bool],
        started: float,
    ) -> Reply | None:
        """Edit the headers, then charge the volume, record the accept and count the
        rate slots: all or nothing."""
        self.header_changes = HeaderChanges(
            remove=tuple(sorted(tx.forged_headers, key=lambda h: -h[1])),
            add=((OWN_HEADER, self._stamp(tx)),),
        )
        # Before the commit: if the MTA refuses a change, nothing is counted.
        edit_headers(self.header_changes)
        charge = self._volume_charge(tx, known)
        record = self._event(Stage.EOM, tx, Reason.ACCEPTED, ACCEPTED)
        limiter = self.services.limiter
        also = None
        if isinstance(limiter, CommitsInTransaction) and tx.reservations:
            reservations = tuple(tx.reservations)

            def also(connection: Any) -> None:
                limiter.commit_in(connection, reservations)

        try:
            denied = self.services.recorder.record_accept(record, charge, also, in_time)
        except TooLate:
            self.header_changes = HeaderChanges()
            return self._too_late(tx, started)
        if also is not None and denied is None:
            tx.reservations.clear()  # committed with the accept
        refusal = first_refusal(VOLUME_CHECKS, VolumeFacts(denied, charge.domain))
        if refusal is not None:
            self.header_changes = HeaderChanges()
            return self._refuse(Stage.EOM, tx, refusal)
        self._log(record, tx)
        self._commit_reservations(tx)
        return None

    def _stamp(self, tx: _Transaction) -> str:
        """Our header on accepted mail: who relayed it and what the scans said."""
        spam = tx.scan.spam
        virus = (
            "unscanned"
            if any(f.scanner == "clamav" for f in tx.scan.failures)
            else ("clean" if self.services.scans.virus is not None else "off")
        )
        parts = [
            f"node={self.services.node}",
            f"qid={tx.queue_id or '-'}",
            f"virus={virus}",
            f"spam={spam.score:g}" if spam and spam.score is not None else "spam=-",
            f"spf={tx.spf.result if tx.spf else '-'}",
        ]
        return "; ".join(parts)

    def _scan(self, tx: _Transaction) -> Refusal | None:
        assert tx.identity is not None and tx.spool is not None
        config = self.services.config
        context = ScanContext(
            identity=tx.identity.label,
            login=tx.facts.login,
            client_ip=str(self.address or self.client),
            helo=self.helo,
            sender=tx.facts.sender,
            recipients=tuple(tx.recipients),
            queue_id=tx.queue_id,
        )
        tx.scan = self.services.scans.scan(
            tx.spool, context, with_spam=tx.size <= config.spam.max_size
        )
        metrics = self.services.metrics
        for outcome in tx.scan.outcomes:
            metrics.scan_seconds.labels(outcome.scanner).observe(outcome.seconds)
        facts = ScanFacts(
            report=tx.scan,
            reject_score=config.spam.reject_score_for(tx.identity.plan),
            on_error={"clamav": config.clamav.on_error, config.spam.backend: config.spam.on_error},
        )
        refusal = first_refusal(SCAN_CHECKS, facts)
        if refusal is None:
            for failure in tx.scan.failures:  # let through unscanned, as configured
                metrics.fail_open.labels(failure.scanner).inc()
        return refusal

    def _volume_charge(self, tx: _Transaction, known: bool) -> VolumeCharge:
        assert tx.identity is not None
        domain = ""
        if known:
            domain = matching_domain(tx.sending_domains()[0], tx.identity.scanned_domains) or ""
        return VolumeCharge(
            customer_id=tx.identity.customer_id,
            domain=domain,
            month=month_of(self.services.clock.now()),
            volume=tx.size * len(tx.recipients),
            limited=tx.limits.monthly_volume_limited,
            base=tx.limits.monthly_volume_base,
            inbound_factor=tx.limits.inbound_volume_factor,
        )

    def _commit_reservations(self, tx: _Transaction) -> None:
        """The message is accepted and recorded: its rate slots now count.

        A failure here must not turn the accept into a refusal (the customer
        would retry a message already counted); the slot's reservation
        expires instead, and that is logged.
        """
        try:
            for reservation in tx.reservations:
                self.services.limiter.commit(reservation)
        except Exception as exc:  # even a bug must leave the accept standing
            log.error(
                "rate slots of qid=%s not committed: %s",
                tx.queue_id or "-",
                exc,
                exc_info=not isinstance(exc, DependencyError),
            )
        tx.reservations.clear()

    def _record_inbound(self, tx: _Transaction) -> None:
        """Inbound mode enforces nothing: it counts bytes × recipients per scanned domain."""
        volumes: dict[tuple[int, str], int] = {}
        try:
            for recipient in tx.recipients:
                found = self.services.directory.find_scanned_domain(domain_of(recipient))
                if found is not None:
                    volumes[found] = volumes.get(found, 0) + tx.size
            if volumes:
                self.services.recorder.record_inbound(month_of(self.services.clock.now()), volumes)
        except DependencyError as exc:
            # Counting must not hold up inbound mail, which this milter does not judge.
            log.error("inbound volume of qid=%s not counted: %s", tx.queue_id or "-", exc)

    def fault(self, stage: Stage) -> None:
        """A callback that sends no reply failed: decide now, and answer at the next reply.

        The decision is recorded and logged at once and the rate slots given
        back; every later callback of the transaction repeats the 451.
        """
        tx = self._tx
        if tx is None:
            self._connection_fault = True
            return
        if tx.refused is None:
            tx.refused = self._decide_fault(stage, tx)
        self._give_back(tx)

    def _decide_fault(self, stage: Stage, tx: _Transaction) -> Reply:
        reply = reply_for(Refusal(Reason.INTERNAL_ERROR))
        self._decide(stage, tx, Reason.INTERNAL_ERROR, reply, must_record=False)
        return reply

    def abort(self) -> None:
        """The transaction ended (RSET, a new MAIL, a refusal, the end of the message)."""
        tx, self._tx = self._tx, None
        if tx is not None:
            self._give_back(tx)

    def _give_back(self, tx: _Transaction) -> None:
        """Close the spool and release the rate slots the transaction still holds."""
        # Never raises: it runs after an accept was committed (end_of_message's
        # finally), whose answer must stay an accept.
        spool, tx.spool = tx.spool, None
        if spool is not None:
            try:
                spool.close()
            except OSError as exc:  # a spooled file's last write, on a full disk
                log.error("spool of qid=%s not closed: %s", tx.queue_id or "-", exc)
        reservations, tx.reservations = tx.reservations, []
        for reservation in reservations:
            try:
                self.services.limiter.release(reservation)
            except Exception as exc:  # noqa: BLE001 - the others must still be released
                # The reservation expires by itself; the window is only fuller meanwhile.
                log.warning("rate slot of qid=%s not released: %s", tx.queue_id or "-", exc)

    def close(self) -> None:
        self.abort()

    # Decisions -------------------------------------------------------------

    def _require_tx(self) -> _Transaction:
        if self._tx is None:
            # libmilter only calls these inside a transaction; reaching here is a bug.
            raise RuntimeError("callback outside a mail transaction")
        return self._tx

    def _guarded(self, stage: Stage, step: Callable[[], Reply | None]) -> Reply | None:
        """Run a stage; a fault becomes 451 4.3.0, never an accept and never a 5xx."""
        try:
            return step()
        except StorageError as exc:
            # The outage itself is logged once by the store's health record.
            log.debug("database error at %s: %s", stage, exc)
            reason = Reason.DATABASE_ERROR
        except DependencyError as exc:
            log.error("%s error at %s: %s", exc.backend, stage, exc)
            reason = Reason.INTERNAL_ERROR
        except Exception:
            log.exception("internal error at %s", stage)
            reason = Reason.INTERNAL_ERROR
        reply = reply_for(Refusal(reason))
        if self._tx is not None:
            # A database that just failed would only fail (slowly) again.
            self._decide(
                stage,
                self._tx,
                reason,
                reply,
                must_record=False,
                record=reason is not Reason.DATABASE_ERROR,
            )
        return reply

    def _refuse(self, stage: Stage, tx: _Transaction, refusal: Refusal) -> Reply:
        reply = reply_for(refusal)
        self._decide(stage, tx, refusal.reason, reply, must_record=True)
        self._feed_reputation(tx, refusal)
        return reply

    def _feed_reputation(self, tx: _Transaction, refusal: Refusal) -> None:
        """Detections and usage-rule refusals count against the identity.

        See docs/states.rst, 'What counts against an identity'.
        """
        identity = tx.identity
        if identity is None:
            return
        reputation = self.services.reputation
        try:
            if refusal.reason is Reason.VIRUS:
                reputation.record_incident(
                    identity.kind, identity.id, IncidentKind.VIRUS, tx.scan.virus
                )
            elif refusal.reason is Reason.SPAM:
                spam = tx.scan.spam
                reputation.record_incident(
                    identity.kind,
                    identity.id,
                    IncidentKind.SPAM,
                    f"score {spam.score:g}" if spam and spam.score else "",
                )
            elif refusal.reason is Reason.VOLUME_LIMIT or (
                refusal.reason is Reason.RATE_LIMIT and not self._suspicion_limit(tx)
            ):
                reputation.record_limit_refusal(identity.kind, identity.id)
        except (DependencyError, UnknownIdentity) as exc:
            # The refusal stands; only its weight in the reputation is lost.
            log.error(
                "reputation of %s not updated after %s: %s", identity.label, refusal.reason, exc
            )

    @staticmethod
    def _suspicion_limit(tx: _Transaction) -> bool:
        """The verdacht server's own low limit: counting it would keep the server verdacht."""
        assert tx.identity is not None
        return (
            tx.identity.state is ServerState.VERDACHT
            and tx.rate_denied is not None
            and tx.rate_denied.bucket == ALL_MAIL
        )

    def _decide(
        self,
        stage: Stage,
        tx: _Transaction,
        reason: Reason,
        reply: Reply,
        *,
        must_record: bool,
        record: bool = True,
    ) -> None:
        """Record and log one refusal; one that must be recorded fails loudly if it cannot be."""
        event = self._event(stage, tx, reason, reply)
        if record:
            self._store_refusal(event, tx, must_record=must_record)
        self._log(event, tx)

    def _store_refusal(self, event: EventRecord, tx: _Transaction, *, must_record: bool) -> None:
        try:
            self.services.recorder.record(event)
        except Exception as exc:
            # A fault's own record must not fail the fault's answer (it would
            # escape _guarded); a refusal that must be recorded fails loudly.
            if must_record:
                raise
            log.error("event for qid=%s not stored: %s", tx.queue_id or "-", exc)

    def _event(self, stage: Stage, tx: _Transaction, reason: Reason, reply: Reply) -> EventRecord:
        spam = tx.scan.spam
        return EventRecord(
            at=self.services.clock.now(),
            node=self.services.node,
            queue_id=tx.queue_id,
            stage=stage,
            client_ip=str(self.address or self.client),
            identity=tx.identity,
            envelope_sender=tx.facts.sender,
            header_from_domain=tx.header_from_domain,
            rcpt_count=len(tx.recipients),
            size=tx.size or (tx.facts.declared_size or 0),
            action=Action.ACCEPT if reply is ACCEPTED else reply.action,
            reason=reason,
            smtp_code=reply.code,
            enhanced_code=reply.dsn,
            spam_score=spam.score if spam else None,
            spam_rules=",".join(spam.rules) if spam else "",
            virus_name=tx.scan.virus,
            spf_result=tx.spf.result if tx.spf else "",
        )

    def _log(self, record: EventRecord, tx: _Transaction) -> None:
        metrics = self.services.metrics
        metrics.decisions.labels(record.action, record.reason).inc()
        if record.action == Action.ACCEPT:
            metrics.accepted_messages.inc()
            metrics.accepted_bytes.inc(record.size * record.rcpt_count)
        self.services.decisions.decision(
            {
                "qid": record.queue_id or "-",
                "stage": record.stage,
                "action": record.action,
                "reason": record.reason,
                "code": record.smtp_code,
                "dsn": record.enhanced_code,
                "client": record.client_ip,
                "helo": self.helo,
                "identity": tx.identity.label if tx.identity else "",
                "customer": tx.identity.customer if tx.identity else "",
                "from": f"<{tx.facts.sender}>",
                "header_from": tx.header_from_domain,
                "rcpts": record.rcpt_count,
                "size": record.size,
                "spf": record.spf_result,
                "virus": record.virus_name,
                "spam_score": record.spam_score,
                "unscanned": ",".join(f.scanner for f in tx.scan.failures),
            }
        )


def _size_param(params: Sequence[str]) -> int | None:
    for param in params:
        key, _, value = param.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def _header_from_domains(value: str) -> list[str]:
    """The domain of every address in a From: header; [""] when it has none.

    Every author counts, as every From: header does: "news@ours <evil@theirs>"
    (an address where the name belongs) and "news@ours, evil@theirs" both
    have a foreign author.
    """
    addresses = email.utils.getaddresses([value[:_FROM_PARSE_LIMIT]])
    return [domain for _, address in addresses if (domain := domain_of(address))] or [""]

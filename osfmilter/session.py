"""One SMTP connection as the milter sees it: gather facts, ask the policy, record.

This is where the pure policy meets the database and the log. It knows
nothing of libmilter: the adapter calls one method per SMTP stage and turns
the returned :class:`~osfmilter.replies.Reply` (or ``None``: go on / accept)
into a milter response.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from osfmilter.addresses import IPAddress, normalize_client
from osfmilter.clock import Clock
from osfmilter.config import Config, PlanLimits
from osfmilter.decisionlog import DecisionLog
from osfmilter.errors import StorageError
from osfmilter.model import Identity, Stage, Transaction, domain_of, is_known_sender
from osfmilter.policy import (
    BODY_CHECKS,
    EOM_CHECKS,
    MAIL_CHECKS,
    RCPT_CHECKS,
    BodyFacts,
    EomFacts,
    MailFacts,
    RcptFacts,
    first_refusal,
)
from osfmilter.replies import Action, Reason, Refusal, Reply, reply_for
from osfmilter.spool import Spool
from osfmilter.storage.store import EventRecord

log = logging.getLogger(__name__)

ACCEPTED = Reply(250, "2.0.0", "accepted")
# Parsing a hostile From: header costs time; the address is near its start.
_FROM_PARSE_LIMIT = 4096


class Directory(Protocol):
    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None: ...


class Recorder(Protocol):
    def record(self, record: EventRecord) -> None: ...


@dataclass(frozen=True)
class Services:
    """Everything outside the session, injected so tests can replace it."""

    config: Config
    directory: Directory
    recorder: Recorder
    clock: Clock
    decisions: DecisionLog
    node: str


@dataclass
class _Transaction:
    facts: Transaction
    identity: Identity | None
    limits: PlanLimits
    queue_id: str
    recipients: int = 0
    recipients_refused: int = 0
    header_from_domains: list[str] = field(default_factory=list)
    spool: Spool | None = None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool else 0

    @property
    def header_from_domain(self) -> str:
        return self.header_from_domains[0] if self.header_from_domains else ""

    def header_sender_known(self) -> bool:
        """Known only if every From: domain is (a forged second From: makes it unknown)."""
        if self.identity is None:
            return False
        domains = self.header_from_domains or [domain_of(self.facts.sender)]
        return all(is_known_sender(d, self.identity.scanned_domains) for d in domains)


class MilterSession:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.client = ""
        self.address: IPAddress | None = None
        self.helo = ""
        self._tx: _Transaction | None = None

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
        config = self.services.config
        tx = _Transaction(facts, None, config.plans.free, queue_id)
        self._tx = tx
        return self._guarded(Stage.MAIL, lambda: self._mail(tx))

    def _mail(self, tx: _Transaction) -> Reply | None:
        config = self.services.config
        tx.identity = self.services.directory.find_identity(self.address, tx.facts.login)
        if tx.identity is not None:
            tx.limits = config.plans.limits(tx.identity.plan)
        facts = MailFacts(
            client=str(self.address or self.client or "unknown"),
            transaction=tx.facts,
            identity=tx.identity,
            limits=tx.limits,
            replies=config.replies,
        )
        refusal = first_refusal(MAIL_CHECKS, facts)
        if refusal is not None:
            return self._refuse(Stage.MAIL, tx, refusal)
        tx.spool = Spool()
        return None

    def rcpt(self, recipient: str, queue_id: str) -> Reply | None:
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        return self._guarded(Stage.RCPT, lambda: self._rcpt(tx))

    def _rcpt(self, tx: _Transaction) -> Reply | None:
        assert tx.identity is not None  # MAIL refused everyone else
        known = is_known_sender(domain_of(tx.facts.sender), tx.identity.scanned_domains)
        refusal = first_refusal(RCPT_CHECKS, RcptFacts(tx.recipients, known, tx.limits))
        if refusal is None:
            tx.recipients += 1
            return None
        tx.recipients_refused += 1
        if tx.recipients_refused == 1:
            # One decision per transaction, however many recipients it refuses.
            return self._refuse(Stage.RCPT, tx, refusal)
        return reply_for(refusal)

    def header(self, name: str, value: str) -> None:
        tx = self._require_tx()
        assert tx.spool is not None
        tx.spool.header(name, value)
        if name.lower() == "from":
            tx.header_from_domains.append(_header_from_domain(value))

    def end_of_headers(self) -> None:
        tx = self._require_tx()
        assert tx.spool is not None
        tx.spool.end_of_headers()

    def body(self, chunk: bytes) -> Reply | None:
        tx = self._require_tx()
        assert tx.spool is not None
        tx.spool.body(chunk)
        refusal = first_refusal(BODY_CHECKS, BodyFacts(tx.size, tx.limits))
        if refusal is None:
            return None
        try:
            return self._guarded(Stage.BODY, lambda: self._refuse(Stage.BODY, tx, refusal))
        finally:
            self.abort()

    def end_of_message(self, queue_id: str) -> Reply | None:
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        try:
            return self._guarded(Stage.EOM, lambda: self._end_of_message(tx))
        finally:
            self.abort()

    def _end_of_message(self, tx: _Transaction) -> Reply | None:
        facts = EomFacts(tx.size, tx.recipients, tx.header_sender_known(), tx.limits)
        refusal = first_refusal(EOM_CHECKS, facts)
        if refusal is not None:
            return self._refuse(Stage.EOM, tx, refusal)
        self._decide(Stage.EOM, tx, Reason.ACCEPTED, ACCEPTED, must_record=True)
        return None

    def abort(self) -> None:
        """The transaction ended (RSET, a new MAIL, a refusal, the end of the message)."""
        if self._tx is not None and self._tx.spool is not None:
            self._tx.spool.close()
        self._tx = None

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
            log.error("database error at %s: %s", stage, exc)
            reason = Reason.DATABASE_ERROR
        except Exception:
            log.exception("internal error at %s", stage)
            reason = Reason.INTERNAL_ERROR
        tx = self._tx
        reply = reply_for(Refusal(reason))
        if tx is not None:
            self._decide(stage, tx, reason, reply, must_record=False)
        return reply

    def _refuse(self, stage: Stage, tx: _Transaction, refusal: Refusal) -> Reply:
        reply = reply_for(refusal)
        self._decide(stage, tx, refusal.reason, reply, must_record=True)
        return reply

    def _decide(
        self, stage: Stage, tx: _Transaction, reason: Reason, reply: Reply, *, must_record: bool
    ) -> None:
        """Log and record one decision. An accept that cannot be recorded must not stand."""
        services = self.services
        action = Action.ACCEPT if reply is ACCEPTED else reply.action
        record = EventRecord(
            at=services.clock.now(),
            node=services.node,
            queue_id=tx.queue_id,
            stage=stage,
            client_ip=str(self.address or self.client),
            identity=tx.identity,
            envelope_sender=tx.facts.sender,
            header_from_domain=tx.header_from_domain,
            rcpt_count=tx.recipients,
            size=tx.size or (tx.facts.declared_size or 0),
            action=action,
            reason=reason,
            smtp_code=reply.code,
            enhanced_code=reply.dsn,
        )
        try:
            services.recorder.record(record)
        except StorageError as exc:
            if must_record:
                raise
            log.error("event for qid=%s not stored: %s", tx.queue_id or "-", exc)
        services.decisions.decision(
            {
                "qid": tx.queue_id or "-",
                "stage": stage,
                "action": action,
                "reason": reason,
                "code": reply.code,
                "dsn": reply.dsn,
                "client": record.client_ip,
                "helo": self.helo,
                "identity": tx.identity.label if tx.identity else "",
                "customer": tx.identity.customer if tx.identity else "",
                "from": f"<{tx.facts.sender}>",
                "header_from": tx.header_from_domain,
                "rcpts": tx.recipients,
                "size": record.size,
            }
        )


def _size_param(params: Sequence[str]) -> int | None:
    for param in params:
        key, _, value = param.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def _header_from_domain(value: str) -> str:
    addresses = email.utils.getaddresses([value[:_FROM_PARSE_LIMIT]])
    for _, address in addresses:
        if domain := domain_of(address):
            return domain
    return ""

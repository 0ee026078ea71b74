"""One SMTP connection as the milter sees it: per stage, gather facts, run the stage, record.

The order of the rules is osfmilter/policy/pipeline.py; this module only
keeps the transaction's state between the MTA's callbacks, runs a stage's
steps through the engine, and hands the outcome to the recorder. It knows
nothing of libmilter: the adapter calls one method per SMTP stage and maps
the returned verdict onto the milter protocol.
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from osfmilter.addresses import normalize_client
from osfmilter.config import Mode
from osfmilter.errors import DependencyError
from osfmilter.limits.volume import month_of
from osfmilter.model import Envelope, ServerState, Stage, domain_of
from osfmilter.policy import engine
from osfmilter.policy.context import Context, Ports, TransactionState
from osfmilter.policy.pipeline import PIPELINE
from osfmilter.replies import DatabaseError, InternalError, Refusal, reply_for
from osfmilter.session.faults import fault_refusal
from osfmilter.session.ports import Acceptance, HeaderEditor, ObservedScanning
from osfmilter.session.recorder import OWN_HEADER, Connection, Recorder
from osfmilter.session.services import Services
from osfmilter.session.signing import MessageSigning
from osfmilter.spool import Spool
from osfmilter.verdict import CONTINUE, Accept, HeaderChanges, Refused, Reject, TempFail, Verdict

log = logging.getLogger("osfmilter.session")

V = TypeVar("V", bound=Verdict)

# Parsing a hostile From: header costs time; the address is near its start.
_FROM_PARSE_LIMIT = 4096
# A domain after an "@", found in linear time (for the part not parsed).
_AT_DOMAIN = re.compile(r'@([^\s<>@,;:"()\[\]\\]+)')


def _leave_headers(changes: HeaderChanges) -> None:
    """For callers that apply no header changes (tests of the session alone)."""


class MilterSession:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.connection = Connection()
        self.recorder = Recorder(services, self.connection)
        self._signing = MessageSigning(services.signing, services.metrics, services.clock)
        self._acceptance = Acceptance(self.recorder, services.ledger, self._signing)
        self._ports = Ports(
            rate=services.limiter,
            spf=services.spf,
            domains=services.directory,
            scanning=ObservedScanning(services.scans, services.metrics, self.connection),
            accepting=self._acceptance,
            clock=services.clock,
        )
        # What the steps see of the current transaction (made once per MAIL).
        self._context: Context | None = None
        self._tx: TransactionState | None = None
        # A fault before MAIL: every transaction of the connection is 451.
        self._connection_fault = False

    @property
    def inbound(self) -> bool:
        return self.services.config.mode is Mode.INBOUND

    # Connection ------------------------------------------------------------

    def connect(self, client: str) -> None:
        """Only note the client: Postfix would hide a connect-stage reply's text."""
        self.connection.client = client
        self.connection.address = normalize_client(client)

    def hello(self, name: str) -> None:
        self.connection.helo = name

    # Transaction -----------------------------------------------------------

    def mail(self, sender: str, params: Sequence[str], login: str, queue_id: str) -> Verdict:
        self.abort()
        self.services.directory.begin_transaction()
        envelope = Envelope(
            sender=sender.strip().strip("<>"), declared_size=_size_param(params), login=login
        )
        tx = TransactionState(envelope, None, self.services.config.plans.free, queue_id)
        self._tx = tx
        client = str(self.connection.address or self.connection.client or "unknown")
        self._context = Context(tx, client, self.connection.helo, self.services.config, self._ports)
        if self._connection_fault:
            # What connect or HELO could not note (the client's address...)
            # must not turn into a refusal, let alone a 5xx.
            tx.refused = self._decide_fault(Stage.CONNECT, tx)
            return tx.refused
        if self.inbound:
            tx.spool = Spool()
            return CONTINUE
        verdict = self._guarded(Stage.MAIL, tx, lambda: self._mail(tx))
        if isinstance(verdict, TempFail | Reject):
            tx.refused = verdict
        return verdict

    def _mail(self, tx: TransactionState) -> Verdict:
        services = self.services
        tx.identity = services.directory.find_identity(self.connection.address, tx.envelope.login)
        if tx.identity is not None:
            tx.limits = services.config.plans.limits(tx.identity.plan)
            if tx.identity.state is ServerState.VERDACHT:
                # Recovery is due 48 h after the last incident, whether or not
                # anyone was looking; observing records it at its due time.
                state = services.reputation.observe(tx.identity.kind, tx.identity.id)
                tx.identity = replace(tx.identity, state=state)
        try:
            outcome = engine.run(PIPELINE[Stage.MAIL], self._steps_see(tx))
        finally:
            self.recorder.spf_checked(tx)
        if outcome.refusal is not None:
            return self._refuse(Stage.MAIL, tx, outcome.refusal)
        tx.spool = Spool()
        return CONTINUE

    def rcpt(self, recipient: str, queue_id: str) -> Verdict:
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        if tx.refused is not None:
            return tx.refused
        if self.inbound:
            tx.recipients.append(recipient)
            return CONTINUE
        return self._guarded(Stage.RCPT, tx, lambda: self._rcpt(tx, recipient))

    def _rcpt(self, tx: TransactionState, recipient: str) -> Verdict:
        refusal = engine.run(PIPELINE[Stage.RCPT], self._steps_see(tx)).refusal
        if refusal is None:
            tx.recipients.append(recipient)
            return CONTINUE
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
        self._signing.header(name, value)
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
            if not self.inbound:
                self._signing.end_of_headers(self._steps_see(tx))
        tx.content_answered = self.services.clock.monotonic()

    def body(self, chunk: bytes) -> Verdict:
        tx = self._require_tx()
        if tx.refused is not None:
            return tx.refused
        if tx.spool is None:
            return CONTINUE
        try:
            tx.spool.body(chunk)
        except Exception:
            # The spool's disk (ENOSPC, EIO): one decision now, as for a header.
            log.exception("qid=%s message not spooled", tx.queue_id or "-")
            self.fault(Stage.BODY)
            return tx.refused or CONTINUE
        if self.inbound:
            return CONTINUE
        self._signing.body(chunk)
        refusal = engine.run(PIPELINE[Stage.BODY], self._steps_see(tx)).refusal
        if refusal is None:
            tx.content_answered = self.services.clock.monotonic()
            return CONTINUE
        try:
            return self._guarded(Stage.BODY, tx, lambda: self._refuse(Stage.BODY, tx, refusal))
        finally:
            self.abort()

    def end_of_message(
        self, queue_id: str, edit_headers: HeaderEditor = _leave_headers
    ) -> Accept | Refused:
        """The decision on the whole message.

        An accepted message's header changes go to ``edit_headers`` before
        the accept is committed (policy step ``volume``), and come back in
        the :class:`Accept`.
        """
        tx = self._require_tx()
        tx.queue_id = queue_id or tx.queue_id
        if tx.refused is not None:
            self.abort()
            return tx.refused
        # Measured from our last content answer, not from now: a milter frozen
        # before it even read the end of message must know the MTA gave up.
        if tx.content_answered is None:
            tx.content_answered = self.services.clock.monotonic()
        try:
            if self.inbound:
                self._record_inbound(tx)
                return Accept()
            return self._guarded(Stage.EOM, tx, lambda: self._end_of_message(tx, edit_headers))
        finally:
            self.abort()

    def _end_of_message(self, tx: TransactionState, edit_headers: HeaderEditor) -> Accept | Refused:
        acceptance = self._acceptance
        acceptance.expect(edit_headers)
        try:
            outcome = engine.run(PIPELINE[Stage.EOM], self._steps_see(tx))
        finally:
            acceptance.edit_headers = None
        if outcome.refusal is not None:
            return self._refuse(Stage.EOM, tx, outcome.refusal)
        accepted, record = acceptance.committed()
        self.recorder.log(record, tx)
        return accepted

    def _steps_see(self, tx: TransactionState) -> Context:
        assert self._context is not None and self._context.tx is tx
        return self._context

    def _record_inbound(self, tx: TransactionState) -> None:
        """Inbound mode enforces nothing: it counts bytes × recipients per scanned domain."""
        volumes: dict[tuple[int, str], int] = {}
        try:
            for recipient in tx.recipients:
                found = self.services.directory.find_scanned_domain(domain_of(recipient))
                if found is not None:
                    volumes[found] = volumes.get(found, 0) + tx.size
            if volumes:
                month = month_of(self.services.clock.now())
                self.services.events.record_inbound(month, volumes)
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

    def _decide_fault(self, stage: Stage, tx: TransactionState) -> Refused:
        refusal = InternalError()
        reply = reply_for(refusal)
        self.recorder.fault(stage, tx, refusal, reply, store=True)
        return reply

    def abort(self) -> None:
        """The transaction ended (RSET, a new MAIL, a refusal, the end of the message)."""
        tx, self._tx = self._tx, None
        self._signing.reset()
        if tx is not None:
            self._give_back(tx)

    def _give_back(self, tx: TransactionState) -> None:
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

    def _require_tx(self) -> TransactionState:
        if self._tx is None:
            # libmilter only calls these inside a transaction; reaching here is a bug.
            raise RuntimeError("callback outside a mail transaction")
        return self._tx

    def _guarded(self, stage: Stage, tx: TransactionState, run: Callable[[], V]) -> V | Refused:
        """Run a stage; a fault becomes 451 4.3.0, never an accept and never a 5xx."""
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - the one boundary that maps faults
            refusal = fault_refusal(stage, exc)
        reply = reply_for(refusal)
        # A database that just failed would only fail (slowly) again.
        self.recorder.fault(stage, tx, refusal, reply, store=not isinstance(refusal, DatabaseError))
        return reply

    def _refuse(self, stage: Stage, tx: TransactionState, refusal: Refusal) -> Refused:
        reply = reply_for(refusal)
        self.recorder.refused(stage, tx, refusal, reply)
        return reply


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
    domains = [domain for _, address in addresses if (domain := domain_of(address))] or [""]
    if len(value) > _FROM_PARSE_LIMIT:
        # Past what is parsed, every "@domain" may be an author's: each is
        # judged (another customer's is refused), and the header, not wholly
        # read, makes the sender unknown (so it is never signed either).
        rest = value[_FROM_PARSE_LIMIT - 255 :]  # from inside the last parsed address
        domains += [m.lower().rstrip(".") for m in _AT_DOMAIN.findall(rest)] + [""]
    return domains

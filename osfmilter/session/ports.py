"""The policy's ports that the session itself provides: the scanners' and the accept's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from osfmilter.events import EventRecord
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.metrics import Metrics
from osfmilter.model import Stage
from osfmilter.policy.context import Context
from osfmilter.replies import Reason
from osfmilter.scanners import ScanContext
from osfmilter.scanners.report import ScanReport
from osfmilter.scanners.service import ScanService
from osfmilter.session.recorder import Connection, Recorder
from osfmilter.session.services import Ledger
from osfmilter.session.signing import MessageSigning
from osfmilter.verdict import Accept, HeaderChanges

log = logging.getLogger(__name__)

HeaderEditor = Callable[[HeaderChanges], None]


class ObservedScanning:
    """The scanners, given what they may use besides the message, timed per scanner."""

    def __init__(self, scans: ScanService, metrics: Metrics, connection: Connection) -> None:
        self.scans, self.metrics, self.connection = scans, metrics, connection

    def scan(self, context: Context) -> ScanReport:
        tx = context.tx
        assert tx.spool is not None
        scan_context = ScanContext(
            identity=context.identity.label,
            login=tx.envelope.login,
            client_ip=self.connection.client_ip,
            helo=self.connection.helo,
            sender=tx.envelope.sender,
            recipients=tuple(tx.recipients),
            queue_id=tx.queue_id,
        )
        report = self.scans.scan(
            tx.spool, scan_context, with_spam=tx.size <= context.config.spam.max_size
        )
        for outcome in report.outcomes:
            self.metrics.scan_seconds.labels(outcome.scanner).observe(outcome.seconds)
        return report


class Acceptance:
    """The session's accept: the headers edited first, then the ledger's commit.

    The MTA's header changes come before the commit: a message is counted
    if and only if its final answer is an accept, so nothing that can still
    fail may come after the commit. One per session; :meth:`expect` arms it
    for one end of message with that callback's header editor.
    """

    def __init__(self, recorder: Recorder, ledger: Ledger, signing: MessageSigning) -> None:
        self.recorder, self.ledger, self.signing = recorder, ledger, signing
        self.edit_headers: HeaderEditor | None = None
        self.accepted: Accept | None = None
        self.record: EventRecord | None = None

    def expect(self, edit_headers: HeaderEditor) -> None:
        self.edit_headers, self.accepted, self.record = edit_headers, None, None

    def committed(self) -> tuple[Accept, EventRecord]:
        """The accept the end of message committed, and its event.

        The pipeline's last step commits it; a stage that passed every step
        without committing is a bug, and becomes a 451 (session._guarded),
        never an accept that nothing counted.
        """
        if self.accepted is None or self.record is None:
            raise RuntimeError("the end of message passed every step, but nothing committed it")
        return self.accepted, self.record

    def accept(self, context: Context, charge: VolumeCharge) -> VolumeDenied | None:
        if self.edit_headers is None:
            raise RuntimeError("an accept outside the end of message")
        tx = context.tx
        changes = self.recorder.header_changes(tx)
        if (signature := self.signing.signature(tx.queue_id)) is not None:
            changes = replace(changes, prepend=(signature,))
        verdict = Accept(changes)
        # Before the commit: if the MTA refuses a change, nothing is counted.
        self.edit_headers(verdict.headers)
        record = self.recorder.event(Stage.EOM, tx, Reason.ACCEPTED, verdict)
        denied = self.ledger.accept(record, charge, tuple(tx.reservations), context.in_time)
        if denied is None:
            tx.reservations.clear()  # used up by the accept
            self.accepted, self.record = verdict, record
            if verdict.headers.prepend:
                self.signing.signed()
            # A scanner that failed had to be one configured to let mail pass.
            self.recorder.let_through_unscanned(tx)
        return denied

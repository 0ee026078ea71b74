"""The only module that speaks libmilter: callbacks in, replies out.

One :class:`OsfMilter` per SMTP connection, called from one libmilter thread.
Each callback hands plain values to a :class:`~osfmilter.session.MilterSession`
and maps the verdict (osfmilter.verdict) it returns onto the milter
protocol, in :meth:`OsfMilter._answer` alone. Callbacks that never refuse
are ``@noreply`` so the MTA does not wait for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, assert_never

import Milter

from osfmilter.model import Stage
from osfmilter.replies import InternalError, reply_for
from osfmilter.session import MilterSession, Services
from osfmilter.verdict import Accept, Continue, HeaderChanges, Reject, TempFail, Verdict

log = logging.getLogger(__name__)

# What we ask of the MTA: choose our macros, and (later) add headers.
FLAGS = Milter.SETSYMLIST | Milter.ADDHDRS | Milter.CHGHDRS

_INTERNAL_ERROR = reply_for(InternalError())


def _text(value: Any) -> str:
    """Envelope values arrive as str (surrogate-escaped) or, for odd bytes, as bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


class OsfMilter(Milter.Base):  # type: ignore[misc]
    def __init__(self, services: Services) -> None:
        self.session = MilterSession(services)
        self.metrics = services.metrics
        self._counted = False
        # Set when even the session could not take a fault: every later
        # answer of the connection is 451, never a 5xx.
        self._fault = False

    def _answer(self, verdict: Verdict) -> int:
        match verdict:
            case Continue():
                return Milter.CONTINUE
            case Accept():  # its header changes are made already, before the commit
                return Milter.ACCEPT
            case TempFail():
                self._reply(verdict)
                return Milter.TEMPFAIL
            case Reject():
                self._reply(verdict)
                return Milter.REJECT
            case _:
                assert_never(verdict)

    def _reply(self, verdict: TempFail | Reject) -> None:
        # libmilter drops a reply whose text has a single '%'.
        self.setreply(str(verdict.code), verdict.enhanced_code, verdict.text.replace("%", "%%"))

    def _safely(self, stage: str, step: Callable[[], Verdict]) -> int:
        """Last line of defence: anything unexpected is 451 4.3.0, never a 5xx or accept."""
        try:
            if self._fault:
                return self._answer(_INTERNAL_ERROR)
            with self.metrics.time_callback(stage):
                return self._answer(step())
        except Exception:
            log.exception("milter callback failed")
            return self._answer(_INTERNAL_ERROR)

    def _note(self, stage: Stage, step: Callable[[], None]) -> int:
        """For @noreply callbacks: a failure is decided now and answered at the next reply."""
        try:
            step()
        except Exception:
            log.exception("milter callback failed at %s", stage)
            try:
                self.session.fault(stage)
            except Exception:
                log.exception("the fault at %s could not be recorded", stage)
                self._fault = True
        return Milter.CONTINUE

    def setsymlist(self, stage: int, *macros: str) -> None:
        """Ask for our macros (called by Milter.Base.negotiate).

        pymilter 1.0.5's own setsymlist hands the C function bytes where it
        takes str; the TypeError made negotiate() fall back to "all
        options" silently, so no @noreply took effect and the MTA waited for
        an answer to every header.
        """
        self._ctx.setsymlist(stage, " ".join(macros))

    def _macro(self, name: str) -> str:
        return _text(self.getsymval(name) or "")

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        address = hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else ""
        if not self._counted:
            self.metrics.connections.inc()
            self._counted = True
        return self._note(Stage.CONNECT, lambda: self.session.connect(_text(address)))

    @Milter.noreply
    def hello(self, hostname: str) -> int:
        return self._note(Stage.CONNECT, lambda: self.session.hello(_text(hostname)))

    @Milter.symlist("i", "{auth_authen}")
    def envfrom(self, mailfrom: str, *params: str) -> int:
        return self._safely(
            "mail",
            lambda: self.session.mail(
                _text(mailfrom),
                [_text(p) for p in params],
                login=self._macro("{auth_authen}").strip(),
                queue_id=self._macro("i"),
            ),
        )

    @Milter.symlist("i")
    def envrcpt(self, to: str, *params: str) -> int:
        return self._safely("rcpt", lambda: self.session.rcpt(_text(to), queue_id=self._macro("i")))

    @Milter.noreply
    def header(self, field: str, value: str) -> int:
        return self._note(Stage.HEADER, lambda: self.session.header(_text(field), _text(value)))

    @Milter.noreply
    def eoh(self) -> int:
        return self._note(Stage.HEADER, self.session.end_of_headers)

    def body(self, chunk: bytes) -> int:
        return self._safely("body", lambda: self.session.body(chunk))

    @Milter.symlist("i")
    def eom(self) -> int:
        return self._safely("eom", self._end_of_message)

    def _end_of_message(self) -> Verdict:
        return self.session.end_of_message(
            queue_id=self._macro("i"), edit_headers=self._edit_headers
        )

    def _edit_headers(self, changes: HeaderChanges) -> None:
        """Called before the accept is committed: a failure here leaves nothing counted."""
        for name, index in changes.remove:
            # A None value deletes the header (smfi_chgheader).
            self.chgheader(name, index, None)
        for name, value in changes.add:
            self.addheader(name, value)
        for name, value in changes.prepend:
            self.addheader(name, value, 0)  # smfi_insheader at index 0

    def abort(self) -> int:
        self.session.abort()
        return Milter.CONTINUE

    def close(self) -> int:
        if self._counted:
            self.metrics.connections.dec()
            self._counted = False
        self.session.close()
        return Milter.CONTINUE

    def data(self) -> int:
        """Answered, though there is nothing to decide: the answer carries the TCP ACK.

        Without it, Postfix's next write on the connection (the first
        header, from its cleanup process) waited for this end's delayed ACK
        of the DATA macros: 40 ms per message on loopback (bench/README.md).
        """
        return Milter.CONTINUE

    @Milter.nocallback
    def unknown(self, cmd: str) -> int:
        return Milter.CONTINUE

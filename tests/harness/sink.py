"""An SMTP sink on loopback that records every message it is given.

Postfix relays to it, and tests assert on what arrived (and how often: a
message that arrives twice is a bug as much as one that never arrives).
The server runs in aiosmtpd's own thread; all access to the recorded
messages goes through one lock, so tests may read while Postfix delivers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.harness.ports import free_port
from tests.harness.service import Service

__all__ = ["Sink", "SinkMessage", "message_id_of", "normalize_message_id"]

#: Larger than any message the tests send (the milter's limit is 50 MB,
#: Postfix's 60 MiB), so the sink never is the component that refuses.
DATA_SIZE_LIMIT = 80 * 1024 * 1024


def normalize_message_id(message_id: str) -> str:
    """Canonical form for comparing Message-IDs: unfolded, in angle brackets."""
    mid = "".join(message_id.split())
    if not mid.startswith("<"):
        mid = f"<{mid}>"
    return mid


def _parse_headers(data: bytes) -> Message:
    """Parse the header section only, so that 60 MB bodies are not parsed.

    Decoded as UTF-8 because SMTPUTF8 mail carries raw UTF-8 headers
    (RFC 6532); the bytes parser would turn them into surrogate escapes.
    """
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end != -1:
            data = data[: end + len(separator)]
            break
    return HeaderParser(policy=compat32).parsestr(data.decode("utf-8", "replace"))


def message_id_of(data: bytes) -> str | None:
    """The Message-ID of a raw message in canonical ``<...>`` form, or None."""
    value = _parse_headers(data).get("Message-ID")
    return normalize_message_id(str(value)) if value else None


@dataclass(frozen=True)
class SinkMessage:
    """One message as the sink received it (``data`` is the raw DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def header(self, name: str) -> str | None:
        """The first header ``name``, unfolded, or None."""
        value = _parse_headers(self.data).get(name)
        if value is None:
            return None
        return " ".join(str(value).split())

    def headers(self, name: str) -> list[str]:
        """All headers ``name`` (e.g. every Received line), unfolded."""
        values = _parse_headers(self.data).get_all(name, [])
        return [" ".join(str(v).split()) for v in values]

    @property
    def message_id(self) -> str | None:
        """The Message-ID in canonical ``<...>`` form, or None."""
        return message_id_of(self.data)


class _Handler:
    """aiosmtpd handler: hands each completed DATA to the sink."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._sink.data_reply
        if reply is not None:
            return reply
        # original_content is the un-decoded DATA (dot-stuffing removed).
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = (
                content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
            )
        self._sink._record(
            SinkMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=raw or b"",
            )
        )
        return "250 2.0.0 Ok: stored by sink"


class Sink(Service):
    """SMTP server on ``127.0.0.1:<free port>`` storing what it receives.

    Set :attr:`data_reply` to an SMTP reply (e.g. ``"451 4.3.0 try later"``)
    to refuse messages at end of DATA without storing them.
    """

    def __init__(self, host: str = "127.0.0.1", data_size_limit: int = DATA_SIZE_LIMIT) -> None:
        self.host = host
        self.data_size_limit = data_size_limit
        self.data_reply: str | None = None
        self._messages: list[SinkMessage] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port the sink listens on (only after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("sink not started")
        return self._port

    def start(self, attempts: int = 5) -> None:
        """Start listening; retries with another port if one was taken meanwhile."""
        if self._controller is not None:
            return
        last_error: Exception | None = None
        for _ in range(attempts):
            port = free_port(self.host)
            controller = Controller(
                _Handler(self),
                hostname=self.host,
                port=port,
                # A fixed name: the default is socket.getfqdn(), i.e. DNS.
                server_hostname="sink.harness.test",
                data_size_limit=self.data_size_limit,
                enable_SMTPUTF8=True,
                decode_data=False,
            )
            try:
                controller.start()
            except Exception as exc:  # noqa: BLE001 - aiosmtpd re-raises bind errors as is
                last_error = exc
                controller.stop(no_assert=True)
                continue
            self._controller = controller
            self._port = port
            return
        raise RuntimeError(f"sink could not start on {self.host}: {last_error!r}")

    def stop(self) -> None:
        """Stop the server thread (messages stay readable)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _record(self, message: SinkMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    @property
    def messages(self) -> list[SinkMessage]:
        """A snapshot of everything received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        """Forget all received messages."""
        with self._cond:
            self._messages.clear()

    def count_message_id(self, message_id: str) -> int:
        """How many received messages carry this Message-ID."""
        wanted = normalize_message_id(message_id)
        return sum(1 for m in self.messages if m.message_id == wanted)

    def with_message_id(self, message_id: str) -> list[SinkMessage]:
        """The received messages that carry this Message-ID."""
        wanted = normalize_message_id(message_id)
        return [m for m in self.messages if m.message_id == wanted]

    def wait_for(
        self,
        predicate: Callable[[Sequence[SinkMessage]], bool],
        timeout: float = 30.0,
        description: str = "",
    ) -> list[SinkMessage]:
        """Block until ``predicate(messages)`` holds; return the messages.

        Raises AssertionError listing what did arrive when ``timeout``
        passes first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snapshot = list(self._messages)
                if predicate(snapshot):
                    return snapshot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Wake up now and then as well: the predicate may depend on
                # more than the message list (e.g. elapsed time).
                self._cond.wait(min(remaining, 0.5))
        summary = "\n".join(
            f"  {i}: from=<{m.mail_from}> to={list(m.rcpt_tos)} "
            f"message-id={m.message_id} size={len(m.data)}"
            for i, m in enumerate(snapshot)
        )
        what = description or getattr(predicate, "__name__", repr(predicate))
        raise AssertionError(
            f"sink: condition {what!r} not met within {timeout}s; "
            f"{len(snapshot)} message(s) received:\n{summary or '  (none)'}"
        )

    def wait_for_message_id(
        self, message_id: str, count: int = 1, timeout: float = 30.0
    ) -> list[SinkMessage]:
        """Wait until ``count`` messages with this Message-ID have arrived."""
        wanted = normalize_message_id(message_id)
        self.wait_for(
            lambda msgs: sum(1 for m in msgs if m.message_id == wanted) >= count,
            timeout=timeout,
            description=f"{count} message(s) with Message-ID {wanted}",
        )
        return self.with_message_id(wanted)

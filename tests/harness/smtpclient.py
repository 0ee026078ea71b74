"""A small SMTP client for driving the private Postfix in tests.

It wraps :class:`smtplib.SMTP` but never raises on 4xx/5xx replies: a
refusal is the thing most tests want to look at. ``XCLIENT`` lets one
loopback connection pose as any client address or SASL login, which is how
the tests exercise the milter's per-client policy without real networks or
a SASL server.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from types import TracebackType
from typing import Self

__all__ = ["Client", "Reply", "Result", "make_message", "send", "xtext"]

CRLF = b"\r\n"
#: Content lines in the padding: 76 characters, well below the 998 limit.
_PAD_LINE = 76


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``code`` is -1 when the server hung up instead."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        """True for a 2xx/3xx reply."""
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        """True for a 4xx reply."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """True for a 5xx reply."""
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class Result:
    """What the server answered in one :func:`send` transaction.

    ``mail`` is ``-1 not attempted`` when the banner or XCLIENT already
    failed. ``rcpt`` holds one reply per recipient, in order; it is empty when MAIL
    was refused. ``data`` is None when DATA was not attempted (no recipient
    accepted).
    """

    banner: Reply
    xclient: Reply | None
    mail: Reply
    rcpt: tuple[Reply, ...]
    data: Reply | None

    @property
    def accepted(self) -> bool:
        """True when the server took responsibility for the message."""
        return self.data is not None and 200 <= self.data.code < 300

    @property
    def first_refusal(self) -> Reply | None:
        """The first non-success reply of the transaction, if any."""
        for reply in (self.banner, self.xclient, self.mail, *self.rcpt, self.data):
            if reply is not None and not reply.ok:
                return reply
        return None


def xtext(value: str) -> str:
    """Encode an XCLIENT attribute value as RFC 3461 xtext."""
    out = []
    for byte in value.encode("utf-8"):
        if byte < 33 or byte > 126 or byte in (ord("+"), ord("=")):
            out.append(f"+{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _reply(code: int, text: bytes | str) -> Reply:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return Reply(code, text)


class Client:
    """One SMTP session; methods return :class:`Reply` instead of raising."""

    def __init__(
        self,
        timeout: float = 60.0,
        ehlo_name: str = "client.harness.test",
        source: str | None = None,
    ) -> None:
        """``source`` is the local address to connect from (an MTA without XCLIENT
        sees it as the client's address, e.g. ``127.0.0.2``)."""
        self.timeout = timeout
        self.ehlo_name = ehlo_name
        self.smtp = smtplib.SMTP(
            timeout=timeout,
            local_hostname=ehlo_name,
            source_address=(source, 0) if source else None,
        )
        self.banner: Reply | None = None
        self.host = "127.0.0.1"

    def connect(self, port: int, host: str = "127.0.0.1") -> Reply:
        """Connect, read the banner and say EHLO."""
        self.host = host
        code, text = self.smtp.connect(host, port)
        self.banner = _reply(code, text)
        if code == 220:
            self.ehlo()
        return self.banner

    def ehlo(self, name: str | None = None) -> Reply:
        """(Re-)send EHLO; forgets the features learnt from an earlier one."""
        self.smtp.ehlo_resp = None
        self.smtp.esmtp_features = {}
        code, text = self.smtp.ehlo(name or self.ehlo_name)
        return _reply(code, text)

    def xclient(
        self,
        addr: str | None = None,
        login: str | None = None,
        helo: str | None = None,
        *,
        name: str | None = None,
        port: int | None = None,
        proto: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send XCLIENT, then EHLO again as the protocol requires.

        An IPv6 ``addr`` gets the ``IPV6:`` prefix Postfix expects. Postfix
        answers XCLIENT with a fresh 220 greeting (the session restarts,
        milters see a new connect), and re-evaluates
        ``smtpd_authorized_xclient_hosts`` against the *new* address, so a
        second XCLIENT in the same session is normally refused.
        """
        attrs: dict[str, str] = {}
        if addr is not None:
            if ":" in addr and not addr.upper().startswith("IPV6:"):
                addr = f"IPV6:{addr}"
            attrs["ADDR"] = addr
        if name is not None:
            attrs["NAME"] = name
        if port is not None:
            attrs["PORT"] = str(port)
        if proto is not None:
            attrs["PROTO"] = proto
        if helo is not None:
            attrs["HELO"] = helo
        if login is not None:
            attrs["LOGIN"] = login
        attrs.update(extra or {})
        if not attrs:
            raise ValueError("XCLIENT needs at least one attribute")
        args = " ".join(f"{key}={xtext(value)}" for key, value in attrs.items())
        code, text = self.smtp.docmd("XCLIENT", args)
        reply = _reply(code, text)
        if code == 220:
            self.ehlo(helo)
        return reply

    @property
    def features(self) -> dict[str, str]:
        """The EHLO keywords of the last EHLO (lower case) and their parameters."""
        return dict(self.smtp.esmtp_features)

    def starttls(self, context: ssl.SSLContext | None = None) -> Reply:
        """STARTTLS and, once the server said 220, the handshake and a new EHLO.

        ``context`` None: encryption without verifying the certificate, as
        many customers' applications do against a relay's self-signed one.
        An ssl.SSLError from the handshake is raised, not turned into a Reply.
        """
        code, text = self.smtp.docmd("STARTTLS")
        if code == 220:
            if context is None:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            assert self.smtp.sock is not None
            self.smtp.sock = context.wrap_socket(self.smtp.sock, server_hostname=self.host)
            self.smtp.file = None
            self.smtp.helo_resp = None
            self.ehlo()
        return _reply(code, text)

    def auth_plain(self, login: str, password: str) -> Reply:
        """AUTH PLAIN with the credentials in the command itself (RFC 4616)."""
        token = base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")
        code, text = self.smtp.docmd("AUTH", f"PLAIN {token}")
        return _reply(code, text)

    def mail(self, sender: str, size: int | None = None, options: Sequence[str] = ()) -> Reply:
        """MAIL FROM, optionally with ``SIZE=`` and further ESMTP options."""
        opts = list(options)
        if size is not None:
            opts.append(f"SIZE={size}")
        code, text = self.smtp.mail(sender, opts)
        return _reply(code, text)

    def rcpt(self, addr: str, options: Sequence[str] = ()) -> Reply:
        """RCPT TO."""
        code, text = self.smtp.rcpt(addr, list(options))
        return _reply(code, text)

    def data(self, message: bytes) -> Reply:
        """DATA with dot-stuffing; returns the 354-stage refusal or the final reply.

        Line endings are sent as given (smtplib does not rewrite bytes), so
        bare-LF probes reach the server unchanged apart from dot-stuffing.
        """
        try:
            code, text = self.smtp.data(message)
        except smtplib.SMTPDataError as exc:
            return _reply(exc.smtp_code, exc.smtp_error)
        return _reply(code, text)

    def data_raw(self, payload: bytes) -> Reply:
        """DATA followed by ``payload`` verbatim (no dot-stuffing, no terminator).

        For smuggling probes: the caller supplies the end-of-data sequence.
        """
        code, text = self.smtp.docmd("DATA")
        if code != 354:
            return _reply(code, text)
        self.smtp.send(payload)
        code, text = self.smtp.getreply()
        return _reply(code, text)

    def rset(self) -> Reply:
        """RSET."""
        code, text = self.smtp.rset()
        return _reply(code, text)

    def quit(self) -> None:
        """QUIT and close, tolerating a server that already hung up."""
        try:
            self.smtp.quit()
        except (smtplib.SMTPServerDisconnected, OSError):
            pass
        finally:
            self.smtp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.quit()


def send(
    port: int,
    sender: str,
    recipients: Iterable[str],
    message: bytes,
    *,
    client_addr: str | None = None,
    login: str | None = None,
    helo: str | None = None,
    host: str = "127.0.0.1",
    mail_options: Sequence[str] = (),
    size: int | None = None,
    timeout: float = 120.0,
    source: str | None = None,
) -> Result:
    """Run one complete transaction and report every reply.

    XCLIENT is sent when ``client_addr``, ``login`` or ``helo`` is given;
    ``source`` is the local address to connect from (see :class:`Client`).
    RCPT is skipped when MAIL is refused, DATA when no RCPT was accepted;
    a server that hangs up mid-way shows up as a :class:`Reply` with code -1.
    """
    xclient_reply: Reply | None = None
    mail_reply = Reply(-1, "not attempted")
    rcpt_replies: list[Reply] = []
    data_reply: Reply | None = None
    banner = Reply(-1, "not connected")
    stage = "connect"
    with Client(timeout=timeout, source=source) as client:
        try:
            banner = client.connect(port, host)
            if banner.code != 220:
                return Result(banner, None, mail_reply, (), None)
            if client_addr is not None or login is not None or helo is not None:
                stage = "xclient"
                xclient_reply = client.xclient(addr=client_addr, login=login, helo=helo)
                if xclient_reply.code != 220:
                    return Result(banner, xclient_reply, mail_reply, (), None)
            stage = "mail"
            mail_reply = client.mail(sender, size=size, options=mail_options)
            if mail_reply.ok:
                stage = "rcpt"
                for rcpt in recipients:
                    rcpt_replies.append(client.rcpt(rcpt))
                if any(r.ok for r in rcpt_replies):
                    stage = "data"
                    data_reply = client.data(message)
        except smtplib.SMTPServerDisconnected as exc:
            lost = Reply(-1, f"connection lost: {exc}")
            if stage == "xclient":
                xclient_reply = lost
            elif stage == "rcpt":
                rcpt_replies.append(lost)
            elif stage == "data":
                data_reply = lost
            else:
                mail_reply = lost
    return Result(banner, xclient_reply, mail_reply, tuple(rcpt_replies), data_reply)


def _normalize_eol(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)


def _padding(count: int) -> bytes:
    """``count`` bytes of CRLF-terminated filler lines (count != 1)."""
    if count == 0:
        return b""
    if count == 1:
        raise ValueError("cannot pad by exactly one byte")
    full, rest = divmod(count, _PAD_LINE + 2)
    lines = [b"x" * _PAD_LINE + CRLF] * full
    if rest == 1:
        # Lengthen the last full line instead of adding a 1-byte line.
        lines[-1] = b"x" * (_PAD_LINE + 1) + CRLF
    elif rest:
        lines.append(b"x" * (rest - 2) + CRLF)
    return b"".join(lines)


def make_message(
    from_addr: str,
    to_addrs: str | Sequence[str],
    subject: str,
    body: bytes | str,
    message_id: str | None = None,
    size: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """Build an RFC 5322 message with CRLF line endings.

    A unique Message-ID is generated unless one is given. Non-ASCII header
    or body text is written as raw UTF-8 (send it with SMTPUTF8/8BITMIME).
    With ``size``, filler lines are appended to the body so that the result
    is exactly ``size`` bytes long.
    """
    if isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    if message_id is None:
        # Explicit domain: make_msgid() would ask socket.getfqdn() (DNS).
        message_id = f"<{uuid.uuid4().hex}@harness.test>"
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    body_bytes = _normalize_eol(body_bytes)
    if body_bytes and not body_bytes.endswith(CRLF):
        body_bytes += CRLF
    eight_bit = any(b > 127 for b in body_bytes)
    headers: dict[str, str] = {
        "From": from_addr,
        "To": ", ".join(to_addrs),
        "Subject": subject,
        "Date": formatdate(localtime=False),
        "Message-ID": message_id,
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Transfer-Encoding": "8bit" if eight_bit else "7bit",
    }
    headers.update(extra_headers or {})
    head = b"".join(f"{k}: {v}".encode() + CRLF for k, v in headers.items())
    message = head + CRLF + body_bytes
    if size is not None:
        if size < len(message):
            raise ValueError(f"size {size} is below the unpadded message size {len(message)}")
        message += _padding(size - len(message))
    return message

"""clamd's INSTREAM command, streamed from the spool in chunks.

Why not the ``clamd`` package from PyPI: it was last released in 2014, sends
1 KiB chunks with ``send`` rather than ``sendall``, and surfaces clamd's
size refusal as a bare BrokenPipeError. INSTREAM is small enough to speak
directly (clamd(8), "INSTREAM"): ``zINSTREAM\\0``, then chunks each preceded
by its length as a 4-byte big-endian integer, then a zero length; clamd
answers one NUL-terminated line.
"""

from __future__ import annotations

import socket
import struct

from osfmilter.addresses import parse_host_port
from osfmilter.scanners import MessageSource, ScanContext, ScannerError, ScanVerdict
from osfmilter.scanners.deadline import Deadline

NAME = "clamav"
_MAX_REPLY = 4096


class ClamavScanner:
    name = NAME

    def __init__(self, address: str) -> None:
        self.address = address
        self._target: str | tuple[str, int] = (
            address if address.startswith("/") else parse_host_port(address)
        )

    def _connect(self, timeout: float) -> socket.socket:
        if isinstance(self._target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in self._target[0] else socket.AF_INET)
        sock.settimeout(timeout)
        try:
            sock.connect(self._target)
        except OSError:
            sock.close()
            raise
        return sock

    def scan(self, message: MessageSource, context: ScanContext, timeout: float) -> ScanVerdict:
        deadline = Deadline(timeout)
        try:
            with self._connect(timeout) as sock:
                sock.sendall(b"zINSTREAM\0")
                for chunk in message.chunks():
                    deadline.arm(sock)
                    sock.sendall(struct.pack("!I", len(chunk)) + chunk)
                sock.sendall(struct.pack("!I", 0))
                reply = _read_reply(sock, deadline)
        except TimeoutError:
            raise ScannerError(NAME, f"no answer within {timeout:g} s") from None
        except OSError as exc:
            # clamd closes the stream (EPIPE/ECONNRESET) when a message exceeds
            # its StreamMaxLength; it is not clean, it is unscanned.
            raise ScannerError(NAME, f"{self.address}: {exc.strerror or exc}") from None
        return parse_reply(reply)

    def ping(self, timeout: float) -> None:
        """clamd answers PING with PONG; else a ScannerError (osfmilter health)."""
        deadline = Deadline(timeout)
        try:
            with self._connect(timeout) as sock:
                sock.sendall(b"zPING\0")
                reply = _read_reply(sock, deadline)
        except TimeoutError:
            raise ScannerError(NAME, f"no answer within {timeout:g} s") from None
        except OSError as exc:
            raise ScannerError(NAME, f"{self.address}: {exc.strerror or exc}") from None
        if reply.rstrip(b"\0\r\n") != b"PONG":
            raise ScannerError(NAME, f"unexpected answer to PING: {reply[:60]!r}")


def _read_reply(sock: socket.socket, deadline: Deadline) -> bytes:
    reply = b""
    while not reply.endswith(b"\0"):
        deadline.arm(sock)
        block = sock.recv(_MAX_REPLY)
        if not block:
            break
        reply += block
        if len(reply) > _MAX_REPLY:
            raise ScannerError(NAME, "answer too long")
    return reply


def parse_reply(raw: bytes) -> ScanVerdict:
    """``stream: OK``, ``stream: NAME FOUND``; anything else (``... ERROR``) is a fault."""
    line = raw.rstrip(b"\0\r\n").decode("utf-8", "replace")
    _, _, result = line.partition(": ")
    if result == "OK":
        return ScanVerdict()
    if result.endswith(" FOUND") and len(result) > len(" FOUND"):
        return ScanVerdict(virus=result.removesuffix(" FOUND").strip())
    raise ScannerError(NAME, f"unexpected answer {line[:200]!r}")

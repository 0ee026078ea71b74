"""rspamd's HTTP protocol: ``POST /checkv2`` with the message as body.

The sender's facts travel as request headers (rspamd's "protocol" page):
``User`` marks the mail as authenticated, as outbound mail is; ``IP``,
``Helo``, ``From``, ``Rcpt`` and ``Queue-Id`` describe the transaction.
The standard library's http.client streams the spooled body in chunks.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from osfmilter.scanners import MessageSource, ScanContext, ScannerError, ScanVerdict
from osfmilter.scanners.deadline import Deadline

NAME = "rspamd"
_MAX_REPLY = 1024 * 1024


class RspamdScanner:
    name = NAME

    def __init__(self, address: str) -> None:
        url = urlsplit(address if "://" in address else f"http://{address}")
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"rspamd address {address!r} is not http://HOST:PORT")
        self.host, self.port = url.hostname, url.port
        self.base = url.path.rstrip("/")
        self.path = self.base + "/checkv2"

    def scan(self, message: MessageSource, context: ScanContext, timeout: float) -> ScanVerdict:
        headers = [
            ("Content-Length", str(message.size)),
            ("IP", context.client_ip),
            ("Helo", context.helo),
            ("From", context.sender),
            ("Queue-Id", context.queue_id),
        ]
        if context.login:
            headers.append(("User", context.login))
        headers += [("Rcpt", rcpt) for rcpt in context.recipients]
        deadline = Deadline(timeout)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.putrequest("POST", self.path, skip_accept_encoding=True)
            for name, value in headers:
                if value:
                    connection.putheader(name, _header_value(value))
            connection.endheaders()
            for chunk in message.chunks():
                if connection.sock is not None:
                    deadline.arm(connection.sock)
                connection.send(chunk)
            response = connection.getresponse()
            body = response.read(_MAX_REPLY + 1)
        except TimeoutError:
            raise ScannerError(NAME, f"no answer within {timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ScannerError(NAME, f"{self.host}:{self.port}: {exc}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise ScannerError(NAME, f"HTTP {response.status} {response.reason}")
        return parse_reply(body)

    def ping(self, timeout: float) -> None:
        """rspamd's worker answers ``GET /ping`` with ``pong``; else a ScannerError."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", self.base + "/ping")
            response = connection.getresponse()
            body = response.read(256)
        except TimeoutError:
            raise ScannerError(NAME, f"no answer within {timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ScannerError(NAME, f"{self.host}:{self.port}: {exc}") from None
        finally:
            connection.close()
        if response.status != 200 or body.strip() != b"pong":
            raise ScannerError(NAME, f"unexpected answer to /ping: HTTP {response.status}")


def _header_value(value: str) -> str:
    """Header values from the envelope, made safe: no CR/LF, printable ASCII."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in value)[:900]


def parse_reply(body: bytes) -> ScanVerdict:
    try:
        reply: Any = json.loads(body)
        score = float(reply["score"])
        symbols = reply.get("symbols") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise ScannerError(NAME, f"unexpected answer: {exc}") from None
    if not isinstance(symbols, dict):
        raise ScannerError(NAME, "unexpected answer: symbols is not an object")
    return ScanVerdict(score=score, rules=tuple(sorted(symbols)))

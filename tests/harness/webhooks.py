"""A webhook receiver on loopback that records every POST and checks its signature
the way README.rst, 'Notifications', tells customers to."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.ports import free_port
from tests.harness.service import Service


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    def verifies(self, secret: str, now: float | None = None, tolerance: float = 300) -> bool:
        """The receiver's check: the signature over "<timestamp>.<body>", and a fresh timestamp."""
        timestamp = self.headers["x-osfmilter-timestamp"]
        signed = timestamp.encode() + b"." + self.body
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs((time.time() if now is None else now) - int(timestamp)) <= tolerance
        return fresh and hmac.compare_digest(expected, self.headers["x-osfmilter-signature"])


class WebhookReceiver(Service):
    """Answers ``status`` (200 unless told otherwise) and records what it was sent."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:  # received, whether the sender lives to hear the answer
                    receiver._received.append(Received(self.path, headers, body))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.received) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} webhook(s) received, {count} expected")

"""Scanner clients against small fake servers: verdicts, garbage, silence, refusals.

The real engines are exercised in tests/integration; these pin the protocol
parsing and the fault paths that are hard to provoke in a real daemon.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from osfmilter.health import BackendHealth
from osfmilter.scanners import ScanContext, Scanner, ScannerError, ScanVerdict
from osfmilter.scanners.clamav import ClamavScanner
from osfmilter.scanners.clamav import parse_reply as parse_clamd
from osfmilter.scanners.rspamd import RspamdScanner
from osfmilter.scanners.service import ConfiguredScanner, ScanService
from osfmilter.scanners.spamassassin import SpamassassinScanner
from osfmilter.scanners.spamassassin import parse_reply as parse_spamd
from osfmilter.spool import Spool

CONTEXT = ScanContext(
    "sasl:alice",
    "alice",
    "192.0.2.1",
    "mx.example",
    "a@example.com",
    ("b@example.org", "c@example.org"),
    "4ABC",
)


def spool(data: bytes = b"Subject: hi\r\n\r\nhello\r\n") -> Spool:
    s = Spool()
    s.body(data)
    return s


Handler = Callable[[socket.socket, bytes], bytes | None]


@pytest.fixture
def fake_server() -> Iterator[Callable[[Handler], int]]:
    """A TCP server on loopback that reads the request and answers what the test says."""
    servers: list[socketserver.TCPServer] = []

    def start(answer: Handler) -> int:
        class RequestHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                data = b""
                try:
                    while block := self.request.recv(65536):
                        data += block
                        if reply := answer(self.request, data):
                            self.request.sendall(reply)
                            return
                except OSError:
                    return

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), RequestHandler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# clamd ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"stream: OK\0", ScanVerdict()),
        (b"stream: Win.Test.EICAR_HDB-1 FOUND\0", ScanVerdict(virus="Win.Test.EICAR_HDB-1")),
    ],
)
def test_clamd_answers(raw: bytes, expected: ScanVerdict) -> None:
    assert parse_clamd(raw) == expected


@pytest.mark.parametrize(
    "raw", [b"INSTREAM size limit exceeded. ERROR\0", b"stream: \0", b"garbage", b"", b" FOUND\0"]
)
def test_clamd_errors_and_garbage_are_faults_never_clean(raw: bytes) -> None:
    with pytest.raises(ScannerError):
        parse_clamd(raw)


def test_clamd_instream_framing(fake_server: Callable[[Handler], int]) -> None:
    received: list[bytes] = []

    def answer(sock: socket.socket, data: bytes) -> bytes | None:
        if data.endswith(b"\0\0\0\0"):
            received.append(data)
            return b"stream: OK\0"
        return None

    port = fake_server(answer)
    body = b"x" * 150_000
    assert ClamavScanner(f"127.0.0.1:{port}").scan(spool(body), CONTEXT, 5) == ScanVerdict()
    data = received[0]
    assert data.startswith(b"zINSTREAM\0")
    payload, offset = b"", len(b"zINSTREAM\0")
    while (length := int.from_bytes(data[offset : offset + 4], "big")) != 0:
        payload += data[offset + 4 : offset + 4 + length]
        offset += 4 + length
    assert payload == body


def test_clamd_silence_is_a_timeout(fake_server: Callable[[Handler], int]) -> None:
    port = fake_server(lambda sock, data: None)
    started = time.monotonic()
    with pytest.raises(ScannerError, match=r"no answer within 0\.5 s"):
        ClamavScanner(f"127.0.0.1:{port}").scan(spool(), CONTEXT, 0.5)
    assert time.monotonic() - started < 3  # bounded by the timeout, not by the server


@pytest.mark.parametrize("scanner", [ClamavScanner, SpamassassinScanner])
def test_a_trickled_answer_is_bounded_by_one_timeout(
    fake_server: Callable[[Handler], int], scanner: Callable[[str], Scanner]
) -> None:
    """The timeout is the whole exchange's, not each receive's: a byte every 0.1 s ends at 0.5 s."""

    def trickle(sock: socket.socket, data: bytes) -> bytes | None:
        for _ in range(50):
            sock.sendall(b"s")
            time.sleep(0.1)
        return None

    port = fake_server(trickle)
    started = time.monotonic()
    with pytest.raises(ScannerError, match=r"no answer within 0\.5 s"):
        scanner(f"127.0.0.1:{port}").scan(spool(), CONTEXT, 0.5)
    assert time.monotonic() - started < 2


def test_clamd_down_is_a_fault(tmp_path: Path) -> None:
    with pytest.raises(ScannerError):
        ClamavScanner(str(tmp_path / "no.sock")).scan(spool(), CONTEXT, 1)


# spamd ------------------------------------------------------------------------------


def test_spamd_symbols_reply() -> None:
    reply = (
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
        b"GTUBE,NO_RECEIVED,NO_RELAYS"
    )
    assert parse_spamd(reply) == ScanVerdict(
        score=1000.0, rules=("GTUBE", "NO_RECEIVED", "NO_RELAYS")
    )


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"SPAMD/1.1 76 Bad header line\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\n\r\n",
        b"",
    ],
)
def test_spamd_garbage_is_a_fault(reply: bytes) -> None:
    with pytest.raises(ScannerError):
        parse_spamd(reply)


def test_spamd_request_carries_length_and_user(fake_server: Callable[[Handler], int]) -> None:
    seen: list[bytes] = []

    def answer(sock: socket.socket, data: bytes) -> bytes | None:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and len(body) >= int(head.split(b"Content-length: ")[1].split(b"\r\n")[0]):
            seen.append(data)
            return b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\nALL_TRUSTED"
        return None

    port = fake_server(answer)
    message = spool(b"Subject: x\r\n\r\n" + b"y" * 70_000)
    verdict = SpamassassinScanner(f"127.0.0.1:{port}").scan(message, CONTEXT, 5)
    assert verdict == ScanVerdict(score=1.5, rules=("ALL_TRUSTED",))
    assert seen[0].startswith(b"SYMBOLS SPAMC/1.5\r\nContent-length: 70014\r\nUser: sasl:alice\r\n")


# rspamd: a recorded /checkv2 exchange ------------------------------------------------

RECORDED = Path(__file__).parent / "data" / "rspamd_checkv2_gtube.json"


def test_rspamd_checkv2_exchange(fake_server: Callable[[Handler], int]) -> None:
    requests: list[bytes] = []
    body = RECORDED.read_bytes()

    def answer(sock: socket.socket, data: bytes) -> bytes | None:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and len(rest) >= int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            requests.append(data)
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        return None

    port = fake_server(answer)
    verdict = RspamdScanner(f"http://127.0.0.1:{port}").scan(spool(), CONTEXT, 5)
    recorded = json.loads(body)
    assert verdict.score == recorded["score"] and "GTUBE" in verdict.rules
    head = requests[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /checkv2 HTTP/1.1")
    for header in (
        "User: alice",
        "IP: 192.0.2.1",
        "From: a@example.com",
        "Rcpt: b@example.org",
        "Rcpt: c@example.org",
        "Queue-Id: 4ABC",
        "Helo: mx.example",
    ):
        assert header in head.splitlines()


def test_rspamd_http_error_is_a_fault(fake_server: Callable[[Handler], int]) -> None:
    port = fake_server(
        lambda sock, data: (
            b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n" if b"\r\n\r\n" in data else None
        )
    )
    with pytest.raises(ScannerError, match="HTTP 500"):
        RspamdScanner(f"127.0.0.1:{port}").scan(spool(b""), CONTEXT, 5)


# Running both ------------------------------------------------------------------------


class BarrierScanner:
    """Both scanners must be inside scan() at once, or the barrier breaks: proof of overlap."""

    def __init__(self, name: str, barrier: threading.Barrier, verdict: ScanVerdict) -> None:
        self.name, self.barrier, self.verdict = name, barrier, verdict

    def scan(self, message: object, context: ScanContext, timeout: float) -> ScanVerdict:
        try:
            self.barrier.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            raise ScannerError(self.name, "ran alone") from None
        return self.verdict


def test_virus_and_spam_scanners_run_at_the_same_time() -> None:
    barrier = threading.Barrier(2)
    service = ScanService(
        ConfiguredScanner(BarrierScanner("clamav", barrier, ScanVerdict()), 5),
        ConfiguredScanner(BarrierScanner("spamassassin", barrier, ScanVerdict(score=1.0)), 5),
        BackendHealth(),
    )
    report = service.scan(spool(), CONTEXT, with_spam=True)
    assert report.failures == () and report.spam == ScanVerdict(score=1.0)
    service.close()


def test_an_outage_is_logged_once_and_its_end_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    health = BackendHealth()
    service = ScanService(
        ConfiguredScanner(ClamavScanner(str(tmp_path / "x.sock")), 1), None, health
    )
    for _ in range(5):
        assert service.scan(spool(), CONTEXT, with_spam=True).failures
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "clamav" in errors[0].getMessage()
    assert health.snapshot() == {"clamav": False}
    health.ok("clamav")
    assert health.snapshot() == {"clamav": True}
    service.close()

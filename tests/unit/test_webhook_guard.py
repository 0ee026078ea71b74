"""A customer's webhook (public_only): refused unless every address is global, and
connected to the address that was checked, so DNS rebinding cannot redirect it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osfmilter.errors import InvalidInput
from osfmilter.notify import webhook
from osfmilter.notify.urls import check_webhook_url
from osfmilter.notify.webhook import DeliveryFailed
from tests.harness.ports import free_port
from tests.harness.tls import make_certificate
from tests.harness.webhooks import WebhookReceiver

PUBLIC = "1.1.1.1"


class FakeResolver:
    """Answers each lookup with the next list of addresses, and counts the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int, **_: object) -> list[tuple[Any, ...]]:
        self.lookups.append(host)
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


class LoopbackConnect:
    """Records the address the sender connects to and connects to the receiver instead."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.addresses: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.addresses.append(address)
        return socket.create_connection(("127.0.0.1", self.receiver.port), timeout)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def test_the_checked_address_is_the_one_connected_to(receiver: WebhookReceiver) -> None:
    # A rebinding name: public when checked, loopback at any later lookup.
    resolver = FakeResolver([PUBLIC], ["127.0.0.1"])
    connect = LoopbackConnect(receiver)
    url = f"http://hooks.example:{receiver.port}/hook"
    status = webhook.post(url, b"{}", {}, 5, resolve=resolver, connect=connect)
    assert status == 200
    assert resolver.lookups == ["hooks.example"]
    assert connect.addresses == [(PUBLIC, receiver.port)]
    [post] = receiver.received
    assert post.headers["host"] == f"hooks.example:{receiver.port}"


def test_https_on_the_pinned_socket_still_sends_and_verifies_the_host_name(
    tmp_path: Path,
) -> None:
    """TLS runs on the connection to the checked address, with SNI and verification for the
    URL's host: a certificate the system does not trust fails the attempt."""
    certificate = make_certificate(tmp_path, ("hooks.example",))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate.cert_path, certificate.key_path)
    names: list[str | None] = []

    def record(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    server.sni_callback = record
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            server.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError):
            pass  # the client refuses the untrusted certificate
        finally:
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connected: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connected.append(address)
        return socket.create_connection(("127.0.0.1", port), timeout)

    try:
        with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):
            webhook.post(
                f"https://hooks.example:{port}/",
                b"{}",
                {},
                5,
                resolve=FakeResolver([PUBLIC]),
                connect=connect,
            )
        thread.join(5)
    finally:
        listener.close()
    assert connected == [(PUBLIC, port)] and names == ["hooks.example"]


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], [PUBLIC, "10.0.0.5"], ["::1"], ["::ffff:192.168.1.1"], ["169.254.169.254"]],
)
def test_any_address_that_is_not_global_is_refused(
    receiver: WebhookReceiver, addresses: list[str]
) -> None:
    connect = LoopbackConnect(receiver)
    with pytest.raises(DeliveryFailed, match="not a public address: refused, not sent"):
        webhook.post(
            "https://hooks.example/", b"{}", {}, 5, resolve=FakeResolver(addresses), connect=connect
        )
    assert connect.addresses == [] and receiver.received == []


def test_a_name_that_does_not_resolve_is_a_failed_attempt() -> None:
    def fail(*_: object, **__: object) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(DeliveryFailed, match=r"hooks\.example: cannot resolve"):
        webhook.post("https://hooks.example/", b"{}", {}, 5, resolve=fail)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example/", "is plain http: use https"),
        ("https://127.0.0.1/", "not a public address"),
        ("https://[::1]:8443/", "not a public address"),
        ("https://10.1.2.3/", "not a public address"),
        ("https://169.254.169.254/latest", "not a public address"),
        ("https://localhost/", "names this host"),
        ("https://api.localhost./", "names this host"),
    ],
)
def test_a_customers_url_must_be_https_to_a_public_host(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_webhook_url(url, allow_http=True, public_only=True)


def test_a_customers_url_may_name_a_public_host() -> None:
    assert check_webhook_url("https://hooks.acme.example/osf", public_only=True)
    assert check_webhook_url(f"https://{PUBLIC}:8443/", public_only=True)
    # The operator's keep loopback over http.
    assert check_webhook_url("http://127.0.0.1:9000/hook")

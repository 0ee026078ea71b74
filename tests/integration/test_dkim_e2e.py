"""DKIM through a real Postfix, on SQLite and PostgreSQL: what reaches the sink verifies.

Keys are made with the operator's command; the records they print are
served by a DNS server on loopback, and dkimpy (a verifier nobody here
wrote) checks every signature the sink receives against them.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from osfmilter.dnstxt import lookup_txt
from osfmilter.spf.checker import resolver_for
from tests.harness.dnsserver import DnsServer
from tests.harness.sink import SinkMessage
from tests.harness.smtpclient import make_message, send
from tests.integration.conftest import BACKENDS, Relay, message_id, relay_on, running_relay

pytestmark = pytest.mark.integration

ACME_SERVER = "192.0.2.10"
BETA_SERVER = "198.51.100.10"
SOA = "example. 60 IN SOA ns.example. host.example. 1 3600 600 86400 60\n"
# The key acme's own server signs with, before the relay adds its signature.
OWN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OWN_PEM = OWN_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
OWN_PUBLIC = base64.b64encode(
    OWN_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
OWN_RECORD = f"v=DKIM1; k=rsa; p={OWN_PUBLIC}"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(SOA) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def relay(request: pytest.FixtureRequest, dns: DnsServer) -> Iterator[Relay]:
    with relay_on(request, "osf-dkim") as relay:
        relay.register("acme", domains=("acme.example", "ed.example"), servers=(ACME_SERVER,))
        relay.register("beta", domains=("beta.example",), servers=(BETA_SERVER,))
        zone = SOA + f"own._domainkey.acme.example. 60 IN TXT {quoted(OWN_RECORD)}\n"
        for domain, algorithm in [
            ("acme.example", "rsa-sha256"),
            ("ed.example", "ed25519-sha256"),
            ("beta.example", "rsa-sha256"),
        ]:
            assert relay.cli("dkim", "keygen", domain, "--algorithm", algorithm) == 0
            shown = json.loads(cli_output(relay, "dkim", "show", domain, "--json"))
            zone += f"{shown['name']}. 60 IN TXT {quoted(shown['record'])}\n"
        dns.serve(zone)
        yield relay


def cli_output(relay: Relay, *args: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert relay.cli(*args) == 0
    return out.getvalue()


def quoted(record: str) -> str:
    """A TXT record's text as strings of at most 255 characters, in zone file syntax."""
    return " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))


def dnsfunc_of(dns: DnsServer) -> Callable[..., bytes | None]:
    resolver = resolver_for([dns.nameserver], 2.0)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        answer = lookup_txt(resolver, name.decode().rstrip("."))
        return answer.records[0].encode() if answer.records else None

    return dnsfunc


def verifies(message: bytes, dns: DnsServer, index: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(message, minkey=1024).verify(idx=index, dnsfunc=dnsfunc_of(dns)))
    except dkim.ValidationError:  # dkimpy raises for some mismatches, returns False for others
        return False


def relayed(relay: Relay, data: bytes, sender: str, **options: object) -> SinkMessage:
    result = send(relay.port, sender, ["bob@example.org"], data, client_addr=ACME_SERVER, **options)  # type: ignore[arg-type]
    assert result.data is not None and result.data.code == 250, result
    [message] = relay.sink.wait_for_message_id(message_id(data))
    return message


def signatures(message: SinkMessage) -> list[str]:
    return message.headers("DKIM-Signature")


def multipart(sender: str) -> bytes:
    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["To"] = "bob@example.org"
    mail["Subject"] = "a long subject that the client folds, " * 3
    mail["Message-ID"] = f"<mp-{sender}@harness.test>"
    mail.set_content("The text part.\n")
    mail.add_attachment(b"\x00\x01binary" * 100, maintype="application", subtype="octet-stream")
    return mail.as_bytes()


@pytest.mark.parametrize(
    ("domain", "algorithm"), [("acme.example", "rsa"), ("ed.example", "ed25519")]
)
@pytest.mark.parametrize("kind", ["7bit", "8bit", "multipart", "folded", "no-final-crlf"])
def test_the_relayed_message_verifies(
    relay: Relay, dns: DnsServer, domain: str, algorithm: str, kind: str
) -> None:
    sender = f"news-{kind}@{domain}"
    options: dict[str, object] = {}
    if kind == "7bit":
        data = make_message(sender, ["bob@example.org"], "plain", "Hello.\r\n\r\n\r\n")
    elif kind == "8bit":
        data = make_message(sender, ["bob@example.org"], "8-bit", "Grüße aus Köln\r\n")
        options["mail_options"] = ["BODY=8BITMIME"]
    elif kind == "multipart":
        data = multipart(sender)
    elif kind == "folded":
        data = make_message(
            sender,
            ["bob@example.org"],
            "folded",
            "  spaces  and\ttabs  \r\n",
            extra_headers={"X-Long": "one\r\n two\r\n\tthree", "Subject": "a\r\n b"},
        )
    else:
        # The client's body ends without CRLF; SMTP's end of data adds one before
        # the milter sees it (tests/unit/dkim covers a body that truly lacks it).
        data = make_message(sender, ["bob@example.org"], "no CRLF", "x").removesuffix(b"\r\n")
    message = relayed(relay, data, sender, **options)
    [signature] = signatures(message)
    assert f"d={domain}" in signature and f"a={algorithm}-sha256" in signature
    assert verifies(message.data, dns), signature


def test_a_message_changed_after_signing_does_not_verify(relay: Relay, dns: DnsServer) -> None:
    data = make_message("news@acme.example", ["bob@example.org"], "tamper", "Pay 10 EUR.\r\n")
    message = relayed(relay, data, "news@acme.example")
    assert verifies(message.data, dns)  # so the verifier is not trivially passing
    assert not verifies(message.data.replace(b"Pay 10 EUR", b"Pay 99 EUR"), dns)
    assert not verifies(message.data.replace(b"Subject: tamper", b"Subject: tampered"), dns)


def test_mail_of_nobodys_domain_is_not_signed(relay: Relay) -> None:
    data = make_message("x@nobody.example", ["bob@example.org"], "unknown", "Hello.\r\n")
    assert signatures(relayed(relay, data, "x@nobody.example")) == []


def test_a_customers_own_signature_stays_and_ours_is_added(relay: Relay, dns: DnsServer) -> None:
    data = make_message("news@acme.example", ["bob@example.org"], "signed twice", "Hello.\r\n")
    # The customer's own server signed it already, with its own key and selector.
    own = dkim.sign(data, b"own", b"acme.example", OWN_PEM, include_headers=[b"from", b"subject"])
    message = relayed(relay, own + data, "news@acme.example")
    ours, theirs = signatures(message)
    assert "s=osf" in ours and "s=own" in theirs  # ours on top
    assert verifies(message.data, dns, 0) and verifies(message.data, dns, 1)


@pytest.fixture(scope="module")
def lenient() -> Iterator[Relay]:
    """A relay that lets another customer's domain through as unknown ([domains] refuse_foreign)."""
    directory = Path(tempfile.mkdtemp(prefix="osflenient-", dir="/tmp"))
    config = "[domains]\nrefuse_foreign = false\n"
    try:
        url = f"sqlite:///{directory}/osfmilter.sqlite3"
        with running_relay(url, name="osf-lenient", milter_config=config) as relay:
            relay.register("acme", domains=("acme.example",), servers=(ACME_SERVER,))
            relay.register("beta", domains=("beta.example",), servers=(BETA_SERVER,))
            assert relay.cli("dkim", "keygen", "beta.example") == 0
            yield relay
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_another_customers_key_never_signs_mail_let_through_as_unknown(lenient: Relay) -> None:
    data = make_message("x@beta.example", ["bob@example.org"], "as beta", "Hello.\r\n")
    message = relayed(lenient, data, "x@beta.example")
    assert signatures(message) == []  # beta.example has an active key, but it is beta's
    [event] = lenient.events(reason="accepted")
    assert event.header_from_domain == "beta.example"


def test_another_customers_key_never_signs(relay: Relay) -> None:
    # beta.example has a key, but it is beta's: acme's mail in its name is refused
    # (foreign_from) before anything could be signed, and nothing reaches the sink.
    data = make_message("x@beta.example", ["bob@example.org"], "beta's", "Hello.\r\n")
    result = send(relay.port, "x@acme.example", ["bob@example.org"], data, client_addr=ACME_SERVER)
    assert result.data is not None and result.data.code == 550
    assert relay.sink.count_message_id(message_id(data)) == 0

"""Which messages the session has signed, and how the signature reaches the accept.

The signer here is a fake that records what it was fed; the real signature
is tested against dkimpy in tests/unit/dkim and through Postfix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from osfmilter.config import Config, config_from_dict
from osfmilter.metrics import Metrics
from osfmilter.session import MilterSession
from osfmilter.verdict import CONTINUE, Accept, HeaderChanges, Verdict
from tests.fakes import FakeDirectory, FakeRecorder, identity, services

SERVER = "192.0.2.10"


@dataclass
class FakeSigner:
    algorithm: str = "ed25519-sha256"
    chunks: list[bytes] = field(default_factory=list)
    signed_over: list[tuple[str, str]] = field(default_factory=list)
    broken: bool = False

    def body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def header(self, headers: Sequence[tuple[str, str]], timestamp: int) -> tuple[str, str]:
        if self.broken:
            raise ValueError("no key")
        self.signed_over = list(headers)
        return "DKIM-Signature", f"v=1; d=example.com; t={timestamp}; b=fake"


@dataclass
class FakeSigning:
    keys: dict[tuple[int, str], FakeSigner] = field(default_factory=dict)
    asked: list[tuple[int, str]] = field(default_factory=list)

    def signer_for(self, customer_id: int, domain: str) -> FakeSigner | None:
        self.asked.append((customer_id, domain))
        return self.keys.get((customer_id, domain))


@dataclass
class Sent:
    reply: Verdict
    edited: list[HeaderChanges]
    signing: FakeSigning
    metrics: Metrics

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def send(
    from_header: str = "News <news@mail.example.com>",
    sender: str = "news@example.com",
    config: Config | None = None,
    broken: bool = False,
    keyed: bool = True,
) -> Sent:
    directory = FakeDirectory(by_address={SERVER: identity()}, other_domains={"other.example": 8})
    signing = FakeSigning({(7, "example.com"): FakeSigner(broken=broken)} if keyed else {})
    metrics = Metrics()
    session = MilterSession(
        services(directory, FakeRecorder(), config, metrics=metrics, signing=signing)
    )
    session.connect(SERVER)
    assert session.mail(f"<{sender}>", [], "", "") == CONTINUE
    assert session.rcpt("<bob@example.org>", "Q") == CONTINUE
    for name, value in [("From", from_header), ("Subject", "hi"), ("To", "bob@example.org")]:
        session.header(name, value)
    session.end_of_headers()
    assert session.body(b"one\r\n") == CONTINUE
    assert session.body(b"two\r\n") == CONTINUE
    edited: list[HeaderChanges] = []
    reply = session.end_of_message("Q", edit_headers=edited.append)
    session.close()
    return Sent(reply, edited, signing, metrics)


def test_a_message_from_the_customers_own_domain_is_signed_on_top() -> None:
    sent = send()
    assert isinstance(sent.reply, Accept)
    [changes] = sent.edited
    # t= is the clock's now, 2026-11-01 12:00 UTC (tests.fakes.FixedClock).
    assert changes.prepend == (("DKIM-Signature", "v=1; d=example.com; t=1793534400; b=fake"),)
    assert [name for name, _ in changes.add] == ["X-Osfmilter"]  # ours stays at the end
    signer = sent.signing.keys[(7, "example.com")]
    assert signer.chunks == [b"one\r\n", b"two\r\n"]
    assert signer.signed_over == [
        ("From", "News <news@mail.example.com>"),
        ("Subject", "hi"),
        ("To", "bob@example.org"),
    ]
    assert sent.signing.asked == [(7, "example.com")]  # the registered domain, not mail.
    assert sent.sample("osfmilter_dkim_signatures_total", algorithm="ed25519-sha256") == 1


@pytest.mark.parametrize(
    "from_header",
    [
        "x@nobody.example",  # an unknown sender
        "news@example.com, x@nobody.example",  # one author outside the domain
        "undisclosed-recipients:;",  # no address at all
        '"' + "x" * 5000 + '" <news@example.com>',  # too long to be wholly read
    ],
)
def test_mail_not_wholly_in_the_customers_domains_is_not_signed(from_header: str) -> None:
    sent = send(from_header)
    assert isinstance(sent.reply, Accept)
    assert sent.edited[0].prepend == ()
    assert sent.signing.asked == []


def test_another_customers_domain_let_through_as_unknown_is_not_signed() -> None:
    config = config_from_dict({"domains": {"refuse_foreign": False}})
    sent = send("x@other.example", sender="x@other.example", config=config)
    assert isinstance(sent.reply, Accept) and sent.edited[0].prepend == ()
    assert sent.signing.asked == []


def test_a_signature_that_fails_leaves_the_message_accepted_unsigned() -> None:
    sent = send(broken=True)
    assert isinstance(sent.reply, Accept) and sent.edited[0].prepend == ()
    assert sent.sample("osfmilter_dkim_failures_total", step="sign") == 1
    assert sent.sample("osfmilter_dkim_signatures_total", algorithm="ed25519-sha256") == 0


def test_a_domain_without_an_active_key_is_not_signed() -> None:
    sent = send(keyed=False)
    assert isinstance(sent.reply, Accept) and sent.edited[0].prepend == ()
    assert sent.signing.asked == [(7, "example.com")]

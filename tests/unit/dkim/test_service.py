"""The milter's keys: the registry names the active key, its file is read once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import dkim

from osfmilter.dkim.keys import KeyFiles, generate, record_text
from osfmilter.dkim.service import RETRY_LOAD, DkimService
from osfmilter.metrics import Metrics
from tests.fakes import FixedClock

DOMAIN = "example.com"


@dataclass
class Keys:
    """What the registry answers: (customer id, domain) -> (selector, algorithm)."""

    active: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)

    def find_dkim_key(self, customer_id: int, domain: str) -> tuple[str, str] | None:
        return self.active.get((customer_id, domain))


def service(tmp_path: Path, keys: Keys) -> tuple[DkimService, Metrics, FixedClock]:
    metrics, clock = Metrics(), FixedClock()
    return DkimService(keys, KeyFiles(tmp_path / "dkim"), metrics, clock), metrics, clock


def failures(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("osfmilter_dkim_failures_total", {"step": "key"}) or 0


def test_a_signature_over_streamed_body_verifies_with_dkimpy(tmp_path: Path) -> None:
    made = generate("ed25519-sha256")
    KeyFiles(tmp_path / "dkim").write(DOMAIN, "s1", made.private_pem)
    dkim_service, _, _ = service(tmp_path, Keys({(7, DOMAIN): ("s1", "ed25519-sha256")}))
    signer = dkim_service.signer_for(7, DOMAIN)
    assert signer is not None and signer.algorithm == "ed25519-sha256"
    headers = [("From", "a@example.com"), ("Subject", "a\n b")]  # libmilter's LF fold
    for chunk in (b"Hello", b" world\r\n", b"\r\n"):
        signer.body(chunk)
    name, value = signer.header(headers, int(time.time()))  # dkimpy refuses a future t=
    assert name == "DKIM-Signature" and "\r" not in value  # LF folds, as libmilter takes them
    # On the wire the MTA ends every line, folds included, with CRLF.
    lines = [f"{n}: {v}".replace("\n", "\r\n") for n, v in [(name, value), *headers]]
    wire = "\r\n".join(lines).encode() + b"\r\n\r\nHello world\r\n\r\n"
    record = record_text("ed25519-sha256", made.public_key).encode()
    assert dkim.verify(wire, dnsfunc=lambda name, timeout=5: record)


def test_another_customers_domain_or_no_key_gives_no_signer(tmp_path: Path) -> None:
    KeyFiles(tmp_path / "dkim").write(DOMAIN, "s1", generate("ed25519-sha256").private_pem)
    dkim_service, metrics, _ = service(tmp_path, Keys({(7, DOMAIN): ("s1", "ed25519-sha256")}))
    assert dkim_service.signer_for(8, DOMAIN) is None
    assert dkim_service.signer_for(7, "other.example") is None
    assert failures(metrics) == 0


def test_a_missing_key_file_leaves_mail_unsigned_and_is_tried_again_later(
    tmp_path: Path,
) -> None:
    dkim_service, metrics, clock = service(tmp_path, Keys({(7, DOMAIN): ("s1", "rsa-sha256")}))
    assert dkim_service.signer_for(7, DOMAIN) is None
    assert dkim_service.signer_for(7, DOMAIN) is None  # counted per message left unsigned
    assert failures(metrics) == 2
    KeyFiles(tmp_path / "dkim").write(DOMAIN, "s1", generate("rsa-sha256").private_pem)
    assert dkim_service.signer_for(7, DOMAIN) is None  # not read again yet
    clock.advance(RETRY_LOAD + 1)
    assert dkim_service.signer_for(7, DOMAIN) is not None


def test_a_key_file_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    KeyFiles(tmp_path / "dkim").write(DOMAIN, "s1", generate("ed25519-sha256").private_pem)
    dkim_service, metrics, _ = service(tmp_path, Keys({(7, DOMAIN): ("s1", "rsa-sha256")}))
    assert dkim_service.signer_for(7, DOMAIN) is None
    assert failures(metrics) == 1

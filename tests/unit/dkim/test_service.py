"""The milter's keys: the registry names the active key, its file is read once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import dkim

from osfmilter.dkim.keys import KeyFiles, generate, record_text
from osfmilter.dkim.service import RETRY_LOAD, DkimService
from osfmilter.dkim.signer import Algorithm
from osfmilter.metrics import Metrics
from osfmilter.storage.registry import ActiveKey
from tests.fakes import FixedClock

DOMAIN = "example.com"


@dataclass
class Keys:
    """What the registry answers: (customer id, domain) -> the active key's row."""

    active: dict[tuple[int, str], ActiveKey] = field(default_factory=dict)

    def find_dkim_key(self, customer_id: int, domain: str) -> ActiveKey | None:
        return self.active.get((customer_id, domain))


def on_disk(
    tmp_path: Path, algorithm: Algorithm, selector: str = "s1", key_id: int = 1
) -> ActiveKey:
    """A key written to the key directory, and its row."""
    made = generate(algorithm)
    KeyFiles(tmp_path / "dkim").write(DOMAIN, selector, made.private_pem)
    return ActiveKey(key_id, selector, algorithm, made.public_key)


def service(tmp_path: Path, keys: Keys) -> tuple[DkimService, Metrics, FixedClock]:
    metrics, clock = Metrics(), FixedClock()
    return DkimService(keys, KeyFiles(tmp_path / "dkim"), metrics, clock), metrics, clock


def failures(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("osfmilter_dkim_failures_total", {"step": "key"}) or 0


def test_a_signature_over_streamed_body_verifies_with_dkimpy(tmp_path: Path) -> None:
    row = on_disk(tmp_path, "ed25519-sha256")
    dkim_service, _, _ = service(tmp_path, Keys({(7, DOMAIN): row}))
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
    record = record_text("ed25519-sha256", row.public_key).encode()
    assert dkim.verify(wire, dnsfunc=lambda name, timeout=5: record)


def test_another_customers_domain_or_no_key_gives_no_signer(tmp_path: Path) -> None:
    row = on_disk(tmp_path, "ed25519-sha256")
    dkim_service, metrics, _ = service(tmp_path, Keys({(7, DOMAIN): row}))
    assert dkim_service.signer_for(8, DOMAIN) is None
    assert dkim_service.signer_for(7, "other.example") is None
    assert failures(metrics) == 0


def test_a_missing_key_file_leaves_mail_unsigned_and_is_tried_again_later(
    tmp_path: Path,
) -> None:
    made = generate("rsa-sha256")
    row = ActiveKey(1, "s1", "rsa-sha256", made.public_key)
    dkim_service, metrics, clock = service(tmp_path, Keys({(7, DOMAIN): row}))
    assert dkim_service.signer_for(7, DOMAIN) is None
    assert dkim_service.signer_for(7, DOMAIN) is None  # counted per message left unsigned
    assert failures(metrics) == 2
    KeyFiles(tmp_path / "dkim").write(DOMAIN, "s1", made.private_pem)
    assert dkim_service.signer_for(7, DOMAIN) is None  # not read again yet
    clock.advance(RETRY_LOAD + 1)
    assert dkim_service.signer_for(7, DOMAIN) is not None


def test_a_key_file_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    row = on_disk(tmp_path, "ed25519-sha256")
    dkim_service, metrics, _ = service(
        tmp_path, Keys({(7, DOMAIN): row._replace(algorithm="rsa-sha256")})
    )
    assert dkim_service.signer_for(7, DOMAIN) is None
    assert failures(metrics) == 1


def test_a_file_that_holds_another_key_than_the_row_never_signs(tmp_path: Path) -> None:
    # The domain removed and added again, a new key under the old selector:
    # a node's old file (or an old copy of the directory) must not sign.
    on_disk(tmp_path, "ed25519-sha256")
    newer = ActiveKey(2, "s1", "ed25519-sha256", generate("ed25519-sha256").public_key)
    dkim_service, metrics, _ = service(tmp_path, Keys({(7, DOMAIN): newer}))
    assert dkim_service.signer_for(7, DOMAIN) is None
    assert failures(metrics) == 1


def test_a_key_is_kept_by_its_row_not_its_selector(tmp_path: Path) -> None:
    first = on_disk(tmp_path, "ed25519-sha256")
    keys = Keys({(7, DOMAIN): first})
    dkim_service, _, _ = service(tmp_path, keys)
    signer = dkim_service.signer_for(7, DOMAIN)
    assert signer is not None
    KeyFiles(tmp_path / "dkim").remove(DOMAIN, "s1")
    keys.active[(7, DOMAIN)] = on_disk(tmp_path, "rsa-sha256", key_id=2)  # same selector
    again = dkim_service.signer_for(7, DOMAIN)
    assert again is not None and again.algorithm == "rsa-sha256"

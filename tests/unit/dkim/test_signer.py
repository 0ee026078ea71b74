"""Signatures that dkimpy verifies, for RSA and Ed25519; and that a changed message fails."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from functools import cache

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from osfmilter.dkim import signer
from osfmilter.dkim.canonical import RelaxedBodyHash, relaxed_header
from osfmilter.dkim.keys import KEY_TYPES, KeyFiles, generate
from osfmilter.dkim.signer import (
    SIGNATURE_HEADER,
    Algorithm,
    SigningKey,
    signature_header,
)

DOMAIN = "example.com"
SELECTOR = "osf202612"
NOW = 1_796_000_000

Headers = list[tuple[str, str]]


@cache
def key_and_record(algorithm: Algorithm, label: str = "") -> tuple[SigningKey, bytes]:
    """A key (one per algorithm and label for the whole module) and its TXT record."""
    generated = generate(algorithm)
    private = load_pem_private_key(generated.private_pem, password=None)
    assert isinstance(private, RSAPrivateKey | Ed25519PrivateKey)
    record = f"v=DKIM1; k={KEY_TYPES[algorithm]}; p={generated.public_key}".encode()
    return SigningKey(DOMAIN, SELECTOR, algorithm, private), record


ALGORITHMS: list[Algorithm] = ["rsa-sha256", "ed25519-sha256"]


def dns_for(record: bytes) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return dnsfunc


def wire(headers: Headers, body: bytes) -> bytes:
    """The message as the MTA relays it: libmilter's LF folds are CRLF on the wire."""
    lines = [
        f"{name}: {value}".replace("\r\n", "\n").replace("\n", "\r\n") for name, value in headers
    ]
    return (
        "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape") + b"\r\n" + body
    )


def body_hash(body: bytes) -> bytes:
    hasher = RelaxedBodyHash()
    for start in range(0, len(body), 7):  # in chunks, as the milter gets it
        hasher.update(body[start : start + 7])
    return hasher.digest()


def sign(
    headers: Headers, body: bytes, key: SigningKey, *, fold: bool = True
) -> tuple[Headers, str]:
    """The headers with the signature on top, as the milter would insert it, and its value."""
    value = signature_header(headers, body_hash(body), key, NOW, fold=fold)
    return [(SIGNATURE_HEADER, value), *headers], value


def verifies(message: bytes, record: bytes) -> bool:
    return bool(dkim.verify(message, dnsfunc=dns_for(record), minkey=1024))


SIMPLE: Headers = [
    ("From", "Alice <alice@example.com>"),
    ("To", "Bob <bob@example.org>"),
    ("Subject", "Hello"),
    ("Date", "Thu, 03 Dec 2026 12:00:00 +0000"),
    ("Message-ID", "<1@example.com>"),
    ("X-Mailer", "test"),
]
MIME = [
    ("MIME-Version", "1.0"),
    ("Content-Type", 'multipart/mixed;\n\tboundary="XYZ"'),
]
MULTIPART_BODY = (
    b"This is a multi-part message.\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xc3\xbc\xc3\x9fe  aus K\xc3\xb6ln \r\n\r\n"
    b"--XYZ\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--XYZ--\r\n\r\n\r\n"
)
OTHER_SIGNATURE = (
    "DKIM-Signature",
    "v=1; a=rsa-sha256; c=relaxed/relaxed; d=esp.example; s=x;\n\th=from:subject; "
    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
)

CASES: dict[str, tuple[Headers, bytes]] = {
    "7bit": (SIMPLE, b"Hello Bob,\r\n\r\nsee you  at  noon.\t\r\n\r\n-- \r\nAlice\r\n"),
    "8bit": (
        [*SIMPLE[:2], ("Subject", "Gr\udcc3\udcbc\udcc3\udc9fe"), *SIMPLE[3:]],
        b"Gr\xc3\xbc\xc3\x9fe \xff\xfe raw bytes\r\n",
    ),
    "multipart": (SIMPLE + MIME, MULTIPART_BODY),
    "folded headers": (
        [
            ("From", "Alice\n <alice@example.com>"),
            ("To", "bob@example.org,\n\tcarol@example.org,\r\n  dave@example.org"),
            ("Subject", "a long subject that\n continues  on the next line"),
            ("References", "<a@example.com>\n\t<b@example.com>"),
        ],
        b"body\r\n",
    ),
    "no final CRLF": (SIMPLE, b"last line without line end"),
    # Not a bare LF: dkimpy's message parser reads it as a line end (as
    # Postfix does before the milter sees the body); test_canonical has it.
    "bare CR": (SIMPLE, b"a bare CR \r in a line\r\n\r\r\n\r\n"),
    "empty body": (SIMPLE, b""),
    "trailing blank lines": (SIMPLE, b"text\r\n\r\n\r\n   \r\n\r\n"),
    "two From headers": (
        [("From", "alice@example.com"), *SIMPLE[1:], ("From", "bob@example.com")],
        b"two authors\r\n",
    ),
    "another signer's DKIM-Signature": ([OTHER_SIGNATURE, *SIMPLE], b"forwarded\r\n"),
    "many signed headers": (
        SIMPLE
        + MIME
        + [("Cc", f"user{i}@example.net") for i in range(12)]
        + [("List-Unsubscribe", "<mailto:u@example.com>"), ("List-Id", "<l.example.com>")],
        b"x\r\n",
    ),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "one-line"])
def test_dkimpy_verifies_the_signature(algorithm: Algorithm, case: str, fold: bool) -> None:
    key, record = key_and_record(algorithm)
    headers, body = CASES[case]
    signed, _ = sign(headers, body, key, fold=fold)
    assert verifies(wire(signed, body), record)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_folded_lines_are_at_most_78_characters(algorithm: Algorithm) -> None:
    key, _ = key_and_record(algorithm)
    headers, body = CASES["many signed headers"]
    _, value = sign(headers, body, key)
    lines = f"{SIGNATURE_HEADER}: {value}".split("\r\n")
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines), lines
    assert all(line.startswith("\t") for line in lines[1:])
    _, one_line = sign(headers, body, key, fold=False)
    assert "\r" not in one_line and "\n" not in one_line


def tags(value: str) -> dict[str, str]:
    unfolded = re.sub(r"\s+", "", value)
    return dict(part.split("=", 1) for part in unfolded.split(";"))


def test_the_tags_and_the_signed_header_list() -> None:
    key, _ = key_and_record("rsa-sha256")
    headers, body = CASES["two From headers"]
    _, value = sign([OTHER_SIGNATURE, ("Received", "from x"), *headers], body, key)
    found = tags(value)
    assert found["v"] == "1" and found["a"] == "rsa-sha256" and found["c"] == "relaxed/relaxed"
    assert (found["d"], found["s"], found["t"]) == (DOMAIN, SELECTOR, str(NOW))
    names = found["h"].split(":")
    # Every occurrence, From once more than it occurs; nothing unsigned.
    assert names.count("from") == 3 and names.count("to") == 1
    assert not {"dkim-signature", "received", "x-mailer"} & set(names)
    assert value.index("b=") > value.index("bh=")


def test_a_message_without_from_still_lists_from() -> None:
    key, _ = key_and_record("ed25519-sha256")
    _, value = sign([("To", "bob@example.org")], b"x\r\n", key)
    assert tags(value)["h"] == "to:from"


Change = Callable[[Headers, bytes], tuple[Headers, bytes]]

CHANGES: dict[str, Change] = {
    "body byte": lambda h, b: (h, b.replace(b"noon", b"noom")),
    "body line added": lambda h, b: (h, b + b"P.S. added\r\n"),
    "subject": lambda h, b: ([(n, "Hello!" if n == "Subject" else v) for n, v in h], b),
    "From added on top": lambda h, b: ([h[0], ("From", "mallory@evil.example"), *h[1:]], b),
    "From added at the bottom": lambda h, b: ([*h, ("From", "mallory@evil.example")], b),
    "To added": lambda h, b: ([*h, ("To", "eve@evil.example")], b),
    "From removed": lambda h, b: ([(n, v) for n, v in h if n != "From"], b),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_message_fails(algorithm: Algorithm, change: str) -> None:
    key, record = key_and_record(algorithm)
    headers, body = CASES["7bit"]
    signed, _ = sign(headers, body, key)
    assert verifies(wire(signed, body), record)
    changed_headers, changed_body = CHANGES[change](signed, body)
    assert not verifies(wire(changed_headers, changed_body), record)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_changes_relaxed_ignores_still_verify(algorithm: Algorithm) -> None:
    key, record = key_and_record(algorithm)
    headers, body = CASES["7bit"]
    signed, _ = sign(headers, body, key)
    refolded = [(n, v.replace(" ", "\n\t ") if n == "To" else v) for n, v in signed]
    retrailed = body.replace(b"\r\n", b"  \r\n") + b"\r\n\r\n"
    unsigned_added = [*signed, ("Received", "from relay")]
    assert verifies(wire(refolded, retrailed), record)
    assert verifies(wire(unsigned_added, body), record)


def test_another_key_does_not_verify() -> None:
    key, _ = key_and_record("rsa-sha256")
    _, other_record = key_and_record("rsa-sha256", "other")
    headers, body = CASES["7bit"]
    signed, _ = sign(headers, body, key)
    assert not verifies(wire(signed, body), other_record)


def test_a_key_of_the_wrong_algorithm_is_refused() -> None:
    rsa_key, _ = key_and_record("rsa-sha256")
    with pytest.raises(ValueError, match="Ed25519PrivateKey"):
        SigningKey(DOMAIN, SELECTOR, "ed25519-sha256", rsa_key.private_key)


def test_a_key_from_key_files_signs(tmp_path) -> None:
    generated = generate("ed25519-sha256")
    files = KeyFiles(tmp_path / "dkim")
    files.write(DOMAIN, SELECTOR, generated.private_pem)
    key = SigningKey(DOMAIN, SELECTOR, "ed25519-sha256", files.load(DOMAIN, SELECTOR))
    record = f"v=DKIM1; k=ed25519; p={generated.public_key}".encode()
    headers, body = CASES["7bit"]
    signed, _ = sign(headers, body, key)
    assert verifies(wire(signed, body), record)


def test_rfc_8463_example_signature_is_reproduced_exactly() -> None:
    """RFC 8463, appendix A: its key, message and header give its very b= (Ed25519 is
    deterministic), through our header canonicalization and our Ed25519 signing."""
    seed = base64.b64decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    private = Ed25519PrivateKey.from_private_bytes(seed)
    key = SigningKey("football.example.com", "brisbane", "ed25519-sha256", private)
    headers = [
        ("From", "Joe SixPack <joe@football.example.com>"),
        ("To", "Suzie Q <suzie@shopping.example.net>"),
        ("Subject", "Is dinner ready?"),
        ("Date", "Fri, 11 Jul 2003 21:00:37 -0700 (PDT)"),
        ("Message-ID", "<20030712040037.46341.5F8J@football.example.com>"),
    ]
    # The RFC's signature header, b= emptied; h= over-signs from, subject and date.
    unsigned = (
        "v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
        " d=football.example.com; i=@football.example.com;\r\n"
        " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
        " subject : date : message-id : from : subject : date;\r\n"
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
        " b="
    )
    data = b"".join(relaxed_header(*field) for field in headers)
    data += relaxed_header(SIGNATURE_HEADER, unsigned)[:-2]
    assert base64.b64encode(signer._sign(key, data)).decode() == (
        "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
    )

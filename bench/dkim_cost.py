"""What DKIM signing costs per message: the relaxed body hash and the signature header.

A 10 KB message (ten header fields, a 10 KB text body fed in the 64 KB
chunks libmilter uses, so one chunk) is signed the way the milter signs it:
RelaxedBodyHash over the body, then signature_header over the headers.
Reported: CPU time (time.process_time) per message, the median of 5 rounds,
for RSA 2048 and Ed25519, and the body hash alone.

    .venv/bin/python bench/dkim_cost.py                 # 3,000 messages a round
    .venv/bin/python bench/dkim_cost.py --messages 500  # quicker

First each key's signature is verified with dkimpy, so the figures are for
signatures that verify.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from osfmilter.dkim.canonical import RelaxedBodyHash
from osfmilter.dkim.keys import KEY_TYPES, generate
from osfmilter.dkim.signer import ALGORITHMS, Algorithm, SigningKey, signature_header

HEADERS = [
    ("Received", "from client.example (client.example [192.0.2.1])\n\tby relay; now"),
    ("From", "Bench Sender <bench@example.com>"),
    ("To", "Someone <rcpt@example.org>"),
    ("Cc", "other@example.org"),
    ("Subject", "A message of ten kilobytes for the DKIM benchmark"),
    ("Date", "Thu, 03 Dec 2026 12:00:00 +0000"),
    ("Message-ID", "<20261203120000.1@example.com>"),
    ("MIME-Version", "1.0"),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Transfer-Encoding", "8bit"),
]
# Text lines of 72 characters with the odd double space and trailing blank.
LINE = b"Lorem ipsum dolor sit amet,  consectetur adipiscing elit, sed do eiusm \r\n"
BODY = (LINE * (10_240 // len(LINE) + 1))[:10_238] + b"\r\n"
CHUNK = 65_536


def body_hash() -> bytes:
    hasher = RelaxedBodyHash()
    for start in range(0, len(BODY), CHUNK):
        hasher.update(BODY[start : start + CHUNK])
    return hasher.digest()


def signing_key(algorithm: Algorithm) -> tuple[SigningKey, str]:
    generated = generate(algorithm)
    private = load_pem_private_key(generated.private_pem, password=None)
    assert isinstance(private, RSAPrivateKey | Ed25519PrivateKey)
    return SigningKey("example.com", "bench", algorithm, private), generated.public_key


def check_signature(key: SigningKey, public_key: str, value: str) -> None:
    """dkimpy (a test dependency, in .venv) verifies the message signed with ``value``."""
    import dkim

    record = f"v=DKIM1; k={KEY_TYPES[key.algorithm]}; p={public_key}".encode()
    fields = [("DKIM-Signature", value), *HEADERS]
    text = "".join(f"{name}: {text}\n" for name, text in fields).replace("\r\n", "\n")
    message = text.replace("\n", "\r\n").encode() + b"\r\n" + BODY
    if not dkim.verify(message, dnsfunc=lambda name, timeout=5: record):
        raise SystemExit(f"{key.algorithm}: the signature does not verify")


def per_message(work: Callable[[], object], messages: int, rounds: int) -> float:
    """Median over rounds of CPU seconds per call."""
    work()  # warm-up
    costs = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(messages):
            work()
        costs.append((time.process_time() - started) / messages)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"message: {len(BODY)} bytes of body, {len(HEADERS)} header fields")
    print(f"{args.messages} messages a round, median of {args.rounds} rounds, CPU time")
    cost = per_message(body_hash, args.messages, args.rounds)
    print(f"{'body hash only':<24} {cost * 1e6:8.1f} µs/message")
    for algorithm in ALGORITHMS:
        key, public_key = signing_key(algorithm)
        value = signature_header(HEADERS, body_hash(), key, 1_796_000_000)
        check_signature(key, public_key, value)

        def sign(key: SigningKey = key) -> str:
            return signature_header(HEADERS, body_hash(), key, 1_796_000_000)

        cost = per_message(sign, args.messages, args.rounds)
        print(f"{algorithm + ' (hash + sign)':<24} {cost * 1e6:8.1f} µs/message")


if __name__ == "__main__":
    main()

"""The streamed relaxed body hash is dkimpy's, in any chunks and in bounded memory."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc

import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from osfmilter.dkim.canonical import RelaxedBodyHash, relaxed_header


def expected(body: bytes) -> bytes:
    return hashlib.sha256(Relaxed.canonicalize_body(body)).digest()


def streamed(chunks: list[bytes]) -> bytes:
    hasher = RelaxedBodyHash()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest()


BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b" ",
    b" \t \r\n",
    b"Hello",
    b"Hello\r\n",
    b"Hello\r\n\r\n\r\n",
    b"Hello  world \t\r\n",
    b"line\r\n   \r\n\t\r\n",
    b"a\r\n\r\n \r\nb\r\n",
    b"\r\n\r\nleading empty lines\r\n",
    b" leading space\r\n",
    b"trailing space, no CRLF  ",
    b"tab\tinside\t\tand  spaces\r\n",
    b"caf\xc3\xa9 \xff\xfe 8-bit\r\n",
    b"bare\nLF\n",
    b"bare\rCR\r",
    b"space before bare LF \n",
    b"space before bare CR \r\n\r",
    b"x\r\r\n",
    b"x\n\r\n\r\n",
    b"\r",
    b"\n",
    b"\r\r\n\n\r\n",
    b"a \r \r\n",
    b"\x0bvertical tab is not WSP \x0b\r\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_whole_body_equals_dkimpy(body: bytes) -> None:
    assert streamed([body]) == expected(body)


@pytest.mark.parametrize("body", BODIES)
def test_every_split_in_three_chunks_equals_dkimpy(body: bytes) -> None:
    want = expected(body)
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert streamed([body[:i], body[i:j], body[j:]]) == want, (i, j)


def test_one_byte_at_a_time_with_empty_chunks_between() -> None:
    body = b"a  \r\n\r\n\t b\r\r\n \n\r\n\r\n \r\n"
    chunks = [piece for byte in body for piece in (bytes([byte]), b"")]
    assert streamed(chunks) == expected(body)


# Bytes that exercise every rule, in runs so that boundaries fall inside them.
PIECES = st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"\xe9", b"  ", b"\x00"])


@settings(max_examples=1000)
@given(
    pieces=st.lists(PIECES, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_any_body_in_any_chunks_equals_dkimpy(pieces: list[bytes], cuts: list[int]) -> None:
    body = b"".join(pieces)
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert b"".join(chunks) == body
    assert streamed(chunks) == expected(body)


def test_rfc_8463_example_body_hash() -> None:
    # RFC 8463, appendix A.3: the bh= of its signed example message.
    body = b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"
    digest = base64.b64encode(streamed([body])).decode()
    assert digest == "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="


def test_digest_does_not_end_the_stream() -> None:
    hasher = RelaxedBodyHash()
    hasher.update(b"first  \r\n\r\n")
    assert hasher.digest() == expected(b"first  \r\n\r\n")
    hasher.update(b"second")
    assert hasher.digest() == expected(b"first  \r\n\r\nsecond")


SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024


def _peak_while_feeding(chunk: bytes, then: bytes = b"") -> tuple[int, bytes]:
    hasher = RelaxedBodyHash()
    tracemalloc.start()
    try:
        for _ in range(SIZE // len(chunk)):
            hasher.update(chunk)
        hasher.update(then)
        digest = hasher.digest()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, digest


@pytest.mark.parametrize("chunk", [b" " * CHUNK, b"\t " * (CHUNK // 2)], ids=["spaces", "tabs"])
def test_50_mb_of_whitespace_is_not_buffered(chunk: bytes) -> None:
    peak, digest = _peak_while_feeding(chunk)
    assert peak < 1024 * 1024
    assert digest == hashlib.sha256(b" \r\n").digest()


def test_50_mb_of_empty_lines_are_not_buffered() -> None:
    peak, digest = _peak_while_feeding(b"\r\n" * (CHUNK // 2))
    assert peak < 1024 * 1024
    assert digest == hashlib.sha256(b"").digest()


def test_50_mb_of_empty_lines_then_text_are_all_hashed() -> None:
    peak, digest = _peak_while_feeding(b"\r\n" * (CHUNK // 2), then=b"end")
    assert peak < 1024 * 1024
    want = hashlib.sha256()
    for _ in range(SIZE // CHUNK):
        want.update(b"\r\n" * (CHUNK // 2))
    want.update(b"end\r\n")
    assert digest == want.digest()


@pytest.mark.parametrize(
    ("name", "value", "canonical"),
    [
        ("Subject", "Hello", b"subject:Hello\r\n"),
        ("SUBJECT ", "  Hello  \t world  ", b"subject:Hello world\r\n"),
        ("To", "a@example.com,\n\tb@example.com", b"to:a@example.com, b@example.com\r\n"),
        ("To", "a@example.com,\r\n b@example.com", b"to:a@example.com, b@example.com\r\n"),
        ("To", "a@example.com,\r b@example.com", b"to:a@example.com, b@example.com\r\n"),
        ("To", "a,\n\n  b", b"to:a, b\r\n"),
        ("X-Empty", "", b"x-empty:\r\n"),
        ("Subject", "caf\udcc3\udca9", b"subject:caf\xc3\xa9\r\n"),
        ("Subject", "café", b"subject:caf\xc3\xa9\r\n"),
    ],
)
def test_relaxed_header(name: str, value: str, canonical: bytes) -> None:
    assert relaxed_header(name, value) == canonical


@pytest.mark.parametrize(
    ("name", "value"),
    [("Subject", " a  b\t"), ("To", "x,\r\n\ty"), ("From", "A <a@example.com>\n z"), ("D", "")],
)
def test_relaxed_header_equals_dkimpy(name: str, value: str) -> None:
    [(cname, cvalue)] = Relaxed.canonicalize_headers([(name.encode(), value.encode())])
    assert relaxed_header(name, value) == cname + b":" + cvalue

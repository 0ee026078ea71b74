"""RFC 6376 relaxed canonicalization: the body hash, streamed, and one header field.

A line end is the pair CR LF and nothing else: a bare CR or a bare LF is an
ordinary byte of the line, as dkimpy and the RFC's wording both read it.
WSP is space and tab.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

CRLF = b"\r\n"
WSP = b" \t"
# After tabs became spaces: a run of spaces, to become one. The literal
# start lets the regex engine search for it fast; it never backtracks.
_SPACES = re.compile(rb"  +")
_HEADER_WSP = re.compile(r"[ \t]+")
_HEADER_BREAK = re.compile(r"\r\n|\n|\r")
# Pending empty lines are hashed in blocks of this many, never as one string.
_CRLF_BLOCK = CRLF * 4096


class RelaxedBodyHash:
    """SHA-256 of the relaxed canonical body (RFC 6376, section 3.4.4), fed in chunks.

    What is held between chunks is bounded whatever the body: the empty
    lines not yet known to be followed by content (a count), whether
    whitespace is pending at the end of the current line (a flag), and a CR
    that may be the first half of a CRLF split across two chunks.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._empty_lines = 0  # CRLFs not yet hashed: trailing ones are dropped
        self._space = False  # WSP after the last content byte of the line
        self._cr = False  # the last byte received was a CR
        self._content = False  # something other than empty lines was hashed

    def update(self, chunk: bytes) -> None:
        data = (b" " if self._space else b"") + (b"\r" if self._cr else b"") + chunk
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        data = _collapse_wsp(data)
        # No two spaces touch now, so one replace drops every space before a line end.
        data = data.replace(b" \r\n", CRLF)
        self._space = data.endswith(b" ")
        if self._space:
            data = data[:-1]
        ending = _trailing_crlfs(data)
        if 2 * ending == len(data):
            self._empty_lines += ending
            return
        self._flush_empty_lines()
        self._hash.update(data[: len(data) - 2 * ending] if ending else data)
        self._content = True
        self._empty_lines = ending

    def digest(self) -> bytes:
        """The hash of the body so far, as if it ended here (the state is not changed)."""
        final = self._hash.copy()
        tail = (b" " if self._space else b"") + (b"\r" if self._cr else b"")
        if tail:
            # Content after the empty lines: they count, and a CRLF ends the body.
            _hash_crlfs(final, self._empty_lines)
            final.update(tail + CRLF)
        elif self._content:
            # Trailing empty lines are dropped; a missing final CRLF is added.
            final.update(CRLF)
        # Else only empty lines, or nothing: the canonical body is empty.
        return final.digest()

    def _flush_empty_lines(self) -> None:
        _hash_crlfs(self._hash, self._empty_lines)
        self._empty_lines = 0


def _collapse_wsp(data: bytes) -> bytes:
    """Every run of WSP as one space (a tab alone too)."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    return _SPACES.sub(b" ", data) if b"  " in data else data


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _hash_crlfs(hasher: _Hasher, count: int) -> None:
    full, rest = divmod(count, len(_CRLF_BLOCK) // 2)
    for _ in range(full):
        hasher.update(_CRLF_BLOCK)
    hasher.update(CRLF * rest)


def _trailing_crlfs(data: bytes) -> int:
    """How many CRLF pairs ``data`` ends with (a bare CR or LF before them is content)."""
    stripped = data.rstrip(CRLF)
    tail = data[len(stripped) :]
    if tail == CRLF * (len(tail) // 2):
        return len(tail) // 2
    # Rare: bare CRs or LFs among the line ends. Read the tail backwards,
    # where the pairs are "\n\r", anchored at its start (no backtracking).
    match = re.match(rb"(?:\n\r)*", tail[::-1])
    assert match is not None  # the pattern matches the empty string
    return len(match.group()) // 2


def relaxed_header(name: str, value: str) -> bytes:
    """One header field, relaxed (RFC 6376, section 3.4.2), with its CRLF.

    ``value`` as libmilter gives it: folded lines may be joined by CRLF,
    LF or CR; all are removed. Surrogate escapes are the original bytes.
    """
    unfolded = _HEADER_BREAK.sub("", value)
    compact = _HEADER_WSP.sub(" ", unfolded).strip(" \t")
    field = name.strip(" \t").lower() + ":" + compact
    return field.encode("utf-8", "surrogateescape") + CRLF

"""The DKIM-Signature header (RFC 6376), signed with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

Canonicalization is relaxed/relaxed: the MTA may refold headers and the
next hops may touch trailing whitespace without breaking the signature.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from osfmilter.dkim.canonical import relaxed_header

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")

SIGNATURE_HEADER = "DKIM-Signature"

# The fields a recipient reads or a list changes, signed wherever present.
SIGNED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "content-description",
        "list-id",
        "list-help",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-subscribe",
        "list-post",
        "list-owner",
        "list-archive",
        "resent-date",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-message-id",
    }
)
# Listed once more than they occur: a From added later breaks the signature.
OVERSIGNED_HEADERS = frozenset({"from"})

MAX_LINE = 78
FOLD = "\r\n\t"


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: Algorithm
    private_key: RSAPrivateKey | Ed25519PrivateKey

    def __post_init__(self) -> None:
        expected = RSAPrivateKey if self.algorithm == "rsa-sha256" else Ed25519PrivateKey
        if not isinstance(self.private_key, expected):
            raise ValueError(f"{self.algorithm} needs an {expected.__name__}")


def signature_header(
    headers: Sequence[tuple[str, str]],
    body_hash: bytes,
    key: SigningKey,
    timestamp: int,
    *,
    fold: bool = True,
) -> str:
    """The value of the DKIM-Signature header (without ``DKIM-Signature:``) for this message.

    ``headers`` in order, as the MTA relays them; ``body_hash`` from
    :class:`~osfmilter.dkim.canonical.RelaxedBodyHash`. Folded (the
    default), no line is longer than 78 characters, the lines joined by
    CRLF and a tab; ``fold=False`` gives one line. libmilter wants folded
    header values joined by LF alone: ``value.replace("\\r\\n", "\\n")``
    signs the same, as relaxed canonicalization removes either.
    """
    names, canonical = _selected(headers)
    tags = [
        "v=1",
        f"a={key.algorithm}",
        "c=relaxed/relaxed",
        f"d={key.domain}",
        f"s={key.selector}",
        f"t={timestamp}",
    ]
    layout = _Layout(fold, len(SIGNATURE_HEADER) + 2)
    for tag in tags:
        layout.add_tag(tag)
    layout.add_list("h=", names, ":")
    layout.add_tag("bh=" + base64.b64encode(body_hash).decode("ascii"))
    unsigned = layout.add_tag_start("b=")
    # RFC 6376 section 3.7: the selected fields, then this header with an
    # empty b= and without its final CRLF.
    data = b"".join(canonical) + relaxed_header(SIGNATURE_HEADER, unsigned)[:-2]
    signature = base64.b64encode(_sign(key, data)).decode("ascii")
    return layout.add_value(signature)


def _selected(headers: Sequence[tuple[str, str]]) -> tuple[list[str], list[bytes]]:
    """The h= names and the canonical fields they select (RFC 6376, section 5.4.2).

    Each signed name is listed once per occurrence; a verifier takes the
    occurrences from the bottom up, so they are hashed in that order.
    """
    present: dict[str, list[tuple[str, str]]] = {}
    for name, value in headers:
        lowered = name.strip(" \t").lower()
        if lowered in SIGNED_HEADERS:
            present.setdefault(lowered, []).append((name, value))
    names: list[str] = []
    canonical: list[bytes] = []
    for lowered, fields in present.items():
        for field in reversed(fields):
            names.append(lowered)
            canonical.append(relaxed_header(*field))
    # A name listed beyond its occurrences selects nothing but must stay absent.
    names.extend(sorted(OVERSIGNED_HEADERS))
    return names, canonical


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key.private_key, RSAPrivateKey):
        return key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    # RFC 8463: Ed25519 signs the SHA-256 hash of the data, not the data.
    return key.private_key.sign(hashlib.sha256(data).digest())


class _Layout:
    """The header value, folded only where relaxed canonicalization makes it a single space.

    Between tags (after ``;``) and after the colons of h= (RFC 6376 allows
    FWS there); and inside b=, whose whitespace a verifier removes with the
    value. The hashed form is the canonical form of these very lines.
    """

    def __init__(self, fold: bool, first_line: int) -> None:
        self.fold = fold
        self.text = ""
        self.column = first_line

    def _put(self, piece: str, separator: str) -> None:
        if self.fold and self.text and self.column + len(separator) + len(piece) > MAX_LINE:
            self.text += FOLD
            self.column = 1
        elif self.text:
            self.text += separator
            self.column += len(separator)
        self.text += piece
        self.column += len(piece)

    def add_tag(self, tag: str) -> None:
        self._put(tag + ";", " ")

    def add_list(self, start: str, items: Sequence[str], joint: str) -> None:
        pieces = [item + joint for item in items[:-1]] + [items[-1] + ";"]
        self._put(start + pieces[0], " ")
        for piece in pieces[1:]:
            self._put(piece, "")

    def add_tag_start(self, start: str) -> str:
        """The last tag's name; the value so far, to hash with this tag empty."""
        if self.fold and self.text:
            # b= on a line of its own, so that the fold does not depend on the signature.
            self.text += FOLD
            self.column = 1
        elif self.text:
            self.text += " "
            self.column += 1
        self.text += start
        self.column += len(start)
        return self.text

    def add_value(self, value: str) -> str:
        if not self.fold:
            return self.text + value
        while value:
            room = MAX_LINE - self.column
            if room <= 0:
                self.text += FOLD
                self.column = 1
                continue
            self.text += value[:room]
            self.column += len(value[:room])
            value = value[room:]
        return self.text

"""A corpus of real-world and hostile messages, each with the answer a correct relay gives.

Two sources, both deterministic and built in memory (nothing large is kept
in the repository):

* messages built here, always: NUL bytes, bare LF and bare CR line endings, lines
  of 998, 999 and 100,000 octets, 10,000 headers, a 1 MiB folded header,
  multiparts nested 100 and 1,000 deep, 5,000 parts, broken boundaries and
  transfer encodings, raw 8-bit and invalid UTF-8 headers, encoded-word
  abuse, missing, multiple and spoofed ``From:`` headers, a zip that expands
  to 100 MiB, EICAR and GTUBE in several wrappings;
* in addition, where it exists, every public sample under
  ``shared/mail-samples/`` beside the repository, or ``$OSFMILTER_MAIL_SAMPLES``
  (SpamAssassin's, rspamd's and mail-parser's test messages), read as bytes
  and sent as is. A plain clone runs without them; CI (``CI=true``) must
  have them, and ``tests/corpus/test_samples.py`` fails there without them.

Every message is sent by a registered server of a customer whose scanned
domain is :data:`DOMAIN`, from an envelope sender in that domain, so the
authorization passes and the answer depends on the content alone.
:class:`Expect` names the answer; ``tests/integration/test_hostile_input.py``
sends the corpus through Postfix and the milter and checks it.

``python -m tests.corpus.generate DIR`` writes the corpus to DIR as
``NAME.eml`` files with an ``index.tsv``, to look at or to feed other tools.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import gzip
import io
import os
import quopri
import random
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from tests.harness.clamd import EICAR, MARKER
from tests.harness.spamd import GTUBE

CRLF = b"\r\n"
KiB = 1024
MiB = 1024 * KiB

#: The customer's scanned domain: From: headers in it make a known sender.
DOMAIN = "corpus.example"
#: A domain nobody registers: From: headers in it make an unknown sender.
FOREIGN = "attacker.test"
#: The header sender of the generated messages.
SENDER = f"news@{DOMAIN}"
#: Envelope recipients of the messages that test the unknown-sender limit:
#: more than an unknown sender may address (5), far fewer than a known one (500).
MANY_RECIPIENTS = 6
#: The plan's message size limit (docs/rules.rst, 'Message size').
SIZE_LIMIT = 52_428_800
#: Where the public samples are: ``$OSFMILTER_MAIL_SAMPLES``, else
#: ``shared/mail-samples`` beside the repository.
SAMPLES_ENV = "OSFMILTER_MAIL_SAMPLES"
#: Set to true by CI, which must run the corpus with the public samples.
CI_ENV = "CI"
DEFAULT_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "mail-samples"

_DATE = b"Thu, 01 Jan 2026 12:00:00 +0000"
_CLEAN_TEXT = (
    b"Hello Bob,\r\n\r\nthe minutes of Tuesday's meeting are below. We agreed to move the\r\n"
    b"quarterly review to the second week of March and to ask Anna for the\r\n"
    b"updated figures.\r\n\r\nKind regards,\r\nAlice\r\n"
)


class Expect(StrEnum):
    """The answer a correct relay gives to a message at the end of DATA (or at MAIL)."""

    #: Delivered: 250 2.0.0, one accept event, the message reaches the sink.
    DELIVERED = "delivered"
    #: Judged by the spam score alone: below the reject score 250 2.0.0, at or
    #: above it 550 5.7.1. For real-world samples without GTUBE, whose score
    #: depends on SpamAssassin's rule set (network tests off).
    SCORED = "scored"
    #: clamd finds the test signature: 554 5.7.1 naming it.
    VIRUS = "virus"
    #: GTUBE in a text part, which SpamAssassin scores 1000: 550 5.7.1.
    SPAM = "spam"
    #: The From: header makes the sender unknown and the message has more
    #: recipients than an unknown sender may have: 452 4.5.3 at end of data.
    UNKNOWN_SENDER_RECIPIENTS = "unknown_sender_recipients"
    #: Over the size limit: 552 5.3.4 (at MAIL when SIZE= says so).
    OVERSIZE = "oversize"


#: (SMTP code, enhanced status code) per expectation; SCORED has two.
ANSWERS: dict[Expect, tuple[int, str]] = {
    Expect.DELIVERED: (250, "2.0.0"),
    Expect.VIRUS: (554, "5.7.1"),
    Expect.SPAM: (550, "5.7.1"),
    Expect.UNKNOWN_SENDER_RECIPIENTS: (452, "4.5.3"),
    Expect.OVERSIZE: (552, "5.3.4"),
}


@dataclass(frozen=True)
class CorpusEntry:
    """One message of the corpus, built on demand (some are large)."""

    name: str
    category: str
    expect: Expect
    build: Callable[[], bytes]
    #: Envelope recipients to send it to.
    recipients: int = 1
    #: The ``SIZE=`` parameter of MAIL FROM, if any.
    declared_size: int | None = None
    note: str = ""

    def data(self) -> bytes:
        return self.build()


# Building blocks ------------------------------------------------------------------------


def _message(
    name: str,
    body: bytes = _CLEAN_TEXT,
    *,
    from_: bytes | None = b"Corpus News <" + SENDER.encode() + b">",
    subject: bytes | None = None,
    content_type: bytes | None = b"text/plain; charset=us-ascii",
    headers: Sequence[bytes] = (),
    eol: bytes = CRLF,
) -> bytes:
    """A message with the usual headers; ``headers`` are raw lines without their EOL."""
    lines: list[bytes] = []
    if from_ is not None:
        lines.append(b"From: " + from_)
    lines += [
        b"To: Bob <rcpt@dest.example>",
        b"Subject: " + (subject if subject is not None else name.encode()),
        b"Date: " + _DATE,
        b"Message-ID: <" + name.encode() + b"@" + DOMAIN.encode() + b">",
        b"MIME-Version: 1.0",
    ]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    lines += headers
    data = CRLF.join(lines) + CRLF + CRLF + body
    if eol != CRLF:
        data = data.replace(CRLF, eol)
    return data


def _part(
    body: bytes,
    content_type: bytes = b"text/plain; charset=us-ascii",
    headers: Sequence[bytes] = (),
) -> bytes:
    """A MIME body part: its headers, a blank line, its content."""
    head = b"Content-Type: " + content_type + CRLF + b"".join(h + CRLF for h in headers)
    return head + CRLF + body


def _multipart(
    parts: Iterable[bytes], boundary: bytes, subtype: bytes = b"mixed"
) -> tuple[bytes, bytes]:
    """(Content-Type value, body) of a multipart holding ``parts``."""
    body = [b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        body.append(b"--" + boundary + CRLF + part)
        if not part.endswith(CRLF):
            body.append(CRLF)
    body.append(b"--" + boundary + b"--" + CRLF)
    content_type = b"multipart/" + subtype + b'; boundary="' + boundary + b'"'
    return content_type, b"".join(body)


def _multipart_message(
    name: str,
    parts: Iterable[bytes],
    boundary: bytes = b"=_corpus_boundary_1",
    subtype: bytes = b"mixed",
    **kwargs: object,
) -> bytes:
    content_type, body = _multipart(parts, boundary, subtype)
    return _message(name, body, content_type=content_type, **kwargs)  # type: ignore[arg-type]


def _b64(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines, as MUAs write it."""
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _attachment(
    payload: bytes,
    filename: bytes = b"report.bin",
    content_type: bytes = b"application/octet-stream",
) -> bytes:
    return _part(
        _b64(payload),
        content_type + b'; name="' + filename + b'"',
        [
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="' + filename + b'"',
        ],
    )


def _text_part(text: bytes = _CLEAN_TEXT) -> bytes:
    return _part(text, headers=[b"Content-Transfer-Encoding: 7bit"])


def _rfc822(inner: bytes) -> bytes:
    return _part(inner, b"message/rfc822", [b'Content-Disposition: attachment; filename="fwd.eml"'])


_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def _zip(files: Sequence[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = method
            archive.writestr(info, data)
    return buffer.getvalue()


def zip_bomb(expanded: int = 100 * MiB) -> bytes:
    """A zip of one file of ``expanded`` zero bytes, deflated (about 0.1 % of it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("zeros.bin", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as out:
            block = bytes(MiB)
            for _ in range(expanded // MiB):
                out.write(block)
    return buffer.getvalue()


def _tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 1_767_225_600
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _uuencode(data: bytes, filename: bytes) -> bytes:
    lines = [b"begin 644 " + filename]
    for offset in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[offset : offset + 45]).rstrip(b"\n"))
    lines += [b"`", b"end"]
    return CRLF.join(lines) + CRLF


def _qp(data: bytes) -> bytes:
    return quopri.encodestring(data).replace(b"\n", CRLF)


def _nested(
    depth: int,
    leaf: bytes,
    leaf_type: bytes = b"text/plain; charset=us-ascii",
    leaf_headers: Sequence[bytes] = (),
) -> tuple[bytes, bytes]:
    """(Content-Type, body) of ``depth`` multiparts, each holding the next, ``leaf`` inside."""
    content_type, body = leaf_type, leaf
    headers = list(leaf_headers)
    for level in range(depth):
        boundary = f"nest-{level}".encode()
        part = _part(body, content_type, headers)
        content_type, body = _multipart([part], boundary)
        headers = []
    return content_type, body


def _encoded_word(text: bytes, charset: bytes = b"utf-8") -> bytes:
    return b"=?" + charset + b"?b?" + base64.b64encode(text) + b"?="


def _folded(words: Iterable[bytes], width: int = 76) -> bytes:
    """Words joined by spaces, folded (CRLF + space) before ``width`` where possible."""
    lines: list[bytes] = []
    line = b""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = line + b" " + word if line else word
    lines.append(line)
    return b"\r\n ".join(lines)


def _sized_line(prefix: bytes, total: int, fill: bytes = b"x") -> bytes:
    """A line of exactly ``total`` octets before its CRLF."""
    assert total >= len(prefix)
    return prefix + fill * (total - len(prefix))


# The generated messages -----------------------------------------------------------------

_ENTRIES: list[CorpusEntry] = []


def _add(
    name: str,
    category: str,
    build: Callable[[], bytes],
    expect: Expect = Expect.DELIVERED,
    *,
    recipients: int = 1,
    declared_size: int | None = None,
    note: str = "",
) -> None:
    _ENTRIES.append(CorpusEntry(name, category, expect, build, recipients, declared_size, note))


def _simple(
    name: str,
    category: str,
    expect: Expect = Expect.DELIVERED,
    *,
    recipients: int = 1,
    note: str = "",
    **kwargs: object,
) -> None:
    """A message built by :func:`_message` from keyword arguments."""
    _add(
        name,
        category,
        lambda: _message(name, **kwargs),  # type: ignore[arg-type]
        expect,
        recipients=recipients,
        note=note,
    )


# Clean controls: what the rest is compared with.
_simple("clean_plain", "clean")
_simple(
    "clean_utf8_body",
    "clean",
    body="Grüße aus Köln, 東京 und Zürich.\r\n".encode(),
    content_type=b"text/plain; charset=utf-8",
    headers=[b"Content-Transfer-Encoding: 8bit"],
)
_add(
    "clean_html_alternative",
    "clean",
    lambda: _multipart_message(
        "clean_html_alternative",
        [
            _text_part(),
            _part(
                b"<html><body><p>Hello Bob,</p><p>the minutes are below.</p></body></html>\r\n",
                b"text/html; charset=us-ascii",
            ),
        ],
        subtype=b"alternative",
    ),
)
_add(
    "clean_attachment",
    "clean",
    lambda: _multipart_message(
        "clean_attachment", [_text_part(), _attachment(bytes(range(256)) * 64, b"table.bin")]
    ),
)
_simple(
    "clean_many_recipients_known",
    "clean",
    recipients=MANY_RECIPIENTS,
    note="a known sender may have 500 recipients on the paid plan",
)

# NUL bytes (PostgreSQL refuses NUL in text; libmilter hands header values over as C strings).
_simple("nul_in_body", "nul", body=b"before\x00after\r\n" + _CLEAN_TEXT)
_simple("nul_body_4k", "nul", body=(b"\x00" * 64 + CRLF) * 64)
_simple("nul_line_only", "nul", body=b"\x00\r\n" + _CLEAN_TEXT)
_simple("nul_in_subject", "nul", subject=b"minutes\x00 of the meeting")
_simple("nul_in_from_display_name", "nul", from_=b"Corpus\x00News <" + SENDER.encode() + b">")
_simple("nul_in_from_domain", "nul", from_=b"news@corpus.exa\x00mple")
_simple("nul_in_header_name", "nul", headers=[b"X-Nul\x00Name: value"])
_simple("nul_after_from_address", "nul", from_=SENDER.encode() + b"\x00evil@" + FOREIGN.encode())

# Line endings.
_simple("eol_bare_lf", "line-endings", eol=b"\n")
_simple(
    "eol_bare_cr",
    "line-endings",
    eol=b"\r",
    note="no LF at all: SMTP sees one long line; Postfix takes it as one header",
)
_simple("eol_cr_cr_lf", "line-endings", eol=b"\r\r\n")
_simple("eol_lf_cr", "line-endings", eol=b"\n\r")
_add(
    "eol_mixed",
    "line-endings",
    lambda: _message("eol_mixed", b"crlf line\r\nlf line\nbare cr line\rcrcrlf line\r\r\nlast\n"),
)
_add(
    "eol_headers_lf_body_crlf",
    "line-endings",
    lambda: _message("eol_headers_lf_body_crlf").replace(b"\r\n", b"\n", 6),
)
_simple("eol_bare_cr_in_subject", "line-endings", subject=b"line one\rX-Injected: yes")
_simple("eol_no_final_newline", "line-endings", body=b"no newline at the end")
_simple("eol_no_body", "line-endings", body=b"")
_add(
    "eol_headers_only_no_separator",
    "line-endings",
    lambda: _message("eol_headers_only_no_separator", b"")[:-2],
)
_simple(
    "dot_lines",
    "line-endings",
    body=b".\r\n..\r\n. \r\n.\rx\r\n.\n.\n" + _CLEAN_TEXT,
    note="dot-stuffed by the client; a bare-LF '.' line does not end DATA",
)

# Line lengths: 998 is SMTP's limit without the CRLF (RFC 5321 4.5.3.1.6).
for _octets in (998, 999, 1000):
    _simple(
        f"line_body_{_octets}", "long-lines", body=_sized_line(b"", _octets) + CRLF + _CLEAN_TEXT
    )
    _simple(f"line_header_{_octets}", "long-lines", headers=[_sized_line(b"X-Long: ", _octets)])
_simple("line_body_100k", "long-lines", body=_sized_line(b"", 100_000) + CRLF + _CLEAN_TEXT)
_simple("line_body_100k_no_newline", "long-lines", body=_sized_line(b"", 100_000))
_simple("line_subject_100k", "long-lines", subject=_sized_line(b"", 100_000 - 9))
_simple(
    "line_from_display_name_100k",
    "long-lines",
    from_=b'"' + _sized_line(b"", 100_000, b"A") + b'" <' + SENDER.encode() + b">",
)
_simple(
    "line_base64_100k",
    "long-lines",
    body=base64.b64encode(bytes(75_000)) + CRLF,
    content_type=b"application/octet-stream",
    headers=[b"Content-Transfer-Encoding: base64"],
)

# Many and huge headers.
_simple(
    "headers_10000",
    "many-headers",
    headers=[f"X-Corpus-{i}: value {i}".encode() for i in range(10_000)],
)
_simple("headers_same_10000", "many-headers", headers=[b"X-Same: again"] * 10_000)
_simple(
    "header_folded_1mib",
    "many-headers",
    headers=[b"X-Folded: " + _folded(f"w{i:06d}".encode() for i in range(150_000))],
    note="Postfix keeps header_size_limit (100 KiB) of it",
)
_simple(
    "header_folded_1mib_from",
    "many-headers",
    from_=_folded(f"p{i}@{DOMAIN},".encode() for i in range(45_000)) + b" " + SENDER.encode(),
    note="a 1 MiB From: of our own addresses",
)
_simple(
    "header_folded_1mib_to",
    "many-headers",
    headers=[b"Cc: " + _folded(f"u{i}@dest.example,".encode() for i in range(60_000))],
)
_simple(
    "header_duplicates_critical",
    "many-headers",
    headers=[
        b"Subject: again",
        b"Message-ID: <dup@corpus.example>",
        b"Content-Type: text/html",
        b"MIME-Version: 2.0",
        b"Content-Transfer-Encoding: base64",
    ]
    * 50,
)
_simple(
    "header_empty_values", "many-headers", headers=[b"X-Empty:", b"Reply-To:", b"Cc:", b"X-Space: "]
)
_add(
    "header_continuation_first",
    "many-headers",
    lambda: b" folded first line\r\n" + _message("header_continuation_first"),
)
_simple(
    "header_line_without_colon",
    "many-headers",
    headers=[b"This is not a header", b"X-After: the body began above"],
)
_simple("header_name_8bit", "many-headers", headers=[b"X-\xe4\xf6\xfc: value"])
_simple(
    "header_forged_own_stamp",
    "many-headers",
    headers=[
        b"X-Osfmilter: node=forged; virus=clean; spam=0",
        b"x-osfmilter: lower case",
        b"X-OSFMILTER: upper\r\n case, folded",
    ],
    note="the milter's own header: the client's copies are removed, one of ours added",
)
_simple("header_name_space_before_colon", "many-headers", headers=[b"X-Spaced : value"])


def _nested_message(name: str, depth: int) -> Callable[[], bytes]:
    def build() -> bytes:
        content_type, body = _nested(depth, _CLEAN_TEXT)
        return _message(name, body, content_type=content_type)

    return build


def _nested_rfc822(name: str, depth: int) -> Callable[[], bytes]:
    def build() -> bytes:
        inner = _message(f"{name}-0")
        for level in range(1, depth):
            inner = _multipart_message(
                f"{name}-{level}",
                [_text_part(), _rfc822(inner)],
                boundary=f"rfc822-{level}".encode(),
            )
        return _multipart_message(name, [_text_part(), _rfc822(inner)])

    return build


def _many_parts(name: str, count: int) -> Callable[[], bytes]:
    def build() -> bytes:
        parts = (_part(f"part {i}\r\n".encode()) for i in range(count))
        return _multipart_message(name, parts)

    return build


# MIME structure.
_add("mime_nested_100", "mime-structure", _nested_message("mime_nested_100", 100))
_add("mime_nested_1000", "mime-structure", _nested_message("mime_nested_1000", 1000))
_add("mime_rfc822_nested_50", "mime-structure", _nested_rfc822("mime_rfc822_nested_50", 50))
_add("mime_parts_5000", "mime-structure", _many_parts("mime_parts_5000", 5000))
_add(
    "mime_empty_multipart", "mime-structure", lambda: _multipart_message("mime_empty_multipart", [])
)
_add(
    "mime_partial",
    "mime-structure",
    lambda: _message(
        "mime_partial",
        b"From: x\r\n\r\nfragment one\r\n",
        content_type=b'message/partial; id="abc@corpus.example"; number=1; total=2',
    ),
)
_add(
    "mime_external_body",
    "mime-structure",
    lambda: _message(
        "mime_external_body",
        b"Content-Type: text/plain\r\n\r\n",
        content_type=b'message/external-body; access-type="URL"; URL="http://127.0.0.1/x"',
    ),
)
_simple(
    "mime_10000_parameters",
    "mime-structure",
    content_type=b"text/plain; " + _folded(f"p{i}=v{i};".encode() for i in range(10_000)),
)
_simple(
    "mime_rfc2231_1000_continuations",
    "mime-structure",
    content_type=b"application/octet-stream; "
    + _folded(f"name*{i}*=utf-8''%41%42{i};".encode() for i in range(1000)),
    headers=[b"Content-Transfer-Encoding: 7bit"],
)

# Broken boundaries.
_BROKEN = b"=_broken"
_add(
    "boundary_missing_parameter",
    "boundaries",
    lambda: _message(
        "boundary_missing_parameter",
        _multipart([_text_part()], _BROKEN)[1],
        content_type=b"multipart/mixed",
    ),
)
_add(
    "boundary_empty",
    "boundaries",
    lambda: _message(
        "boundary_empty",
        _multipart([_text_part()], b"")[1],
        content_type=b'multipart/mixed; boundary=""',
    ),
)
_add(
    "boundary_never_closed",
    "boundaries",
    lambda: _message(
        "boundary_never_closed",
        b"--" + _BROKEN + CRLF + _text_part() + b"--" + _BROKEN + CRLF + _text_part(),
        content_type=b'multipart/mixed; boundary="' + _BROKEN + b'"',
    ),
)
_add(
    "boundary_never_used",
    "boundaries",
    lambda: _message(
        "boundary_never_used",
        _CLEAN_TEXT,
        content_type=b'multipart/mixed; boundary="' + _BROKEN + b'"',
    ),
)
_add(
    "boundary_close_first",
    "boundaries",
    lambda: _message(
        "boundary_close_first",
        b"--" + _BROKEN + b"--" + CRLF + b"--" + _BROKEN + CRLF + _text_part(),
        content_type=b'multipart/mixed; boundary="' + _BROKEN + b'"',
    ),
)
_add(
    "boundary_1000_chars",
    "boundaries",
    lambda: _multipart_message("boundary_1000_chars", [_text_part()], b"b" * 1000),
)
_add(
    "boundary_71_chars",
    "boundaries",
    lambda: _multipart_message("boundary_71_chars", [_text_part()], b"c" * 71),
)
_add(
    "boundary_prefix_of_inner",
    "boundaries",
    lambda: _multipart_message(
        "boundary_prefix_of_inner",
        [_part(_multipart([_text_part()], b"outerX")[1], b'multipart/mixed; boundary="outerX"')],
        b"outer",
    ),
)
_add(
    "boundary_same_inner_outer",
    "boundaries",
    lambda: _multipart_message(
        "boundary_same_inner_outer",
        [_part(_multipart([_text_part()], b"same")[1], b'multipart/mixed; boundary="same"')],
        b"same",
    ),
)
_add(
    "boundary_part_without_blank_line",
    "boundaries",
    lambda: _message(
        "boundary_part_without_blank_line",
        b"--"
        + _BROKEN
        + b"\r\nContent-Type: text/plain\r\nno blank line here\r\n--"
        + _BROKEN
        + b"--\r\n",
        content_type=b'multipart/mixed; boundary="' + _BROKEN + b'"',
    ),
)
_add(
    "boundary_two_content_types",
    "boundaries",
    lambda: _multipart_message(
        "boundary_two_content_types",
        [_text_part()],
        b"first",
        headers=[b'Content-Type: multipart/alternative; boundary="second"'],
    ),
)
_add(
    "boundary_with_specials",
    "boundaries",
    lambda: _multipart_message("boundary_with_specials", [_text_part()], b"'()+_,-./:=? \"\\"),
)

# Broken transfer encodings and charsets.
_simple(
    "b64_invalid_characters",
    "encodings",
    body=b"!!!@@@###$$$%%%^^^&&&***\r\n",
    headers=[b"Content-Transfer-Encoding: base64"],
)
_simple(
    "b64_bad_padding",
    "encodings",
    body=b"QUJD=\r\nRE==VG\r\n=====\r\nQQ\r\n",
    headers=[b"Content-Transfer-Encoding: base64"],
)
_simple(
    "b64_truncated",
    "encodings",
    body=base64.b64encode(_CLEAN_TEXT)[:-3] + CRLF,
    headers=[b"Content-Transfer-Encoding: base64"],
)
_simple(
    "b64_binary_declared_text",
    "encodings",
    body=_b64(random.Random(1).randbytes(8 * KiB)),
    content_type=b"text/plain; charset=utf-8",
    headers=[b"Content-Transfer-Encoding: base64"],
)
_simple(
    "qp_invalid_escapes",
    "encodings",
    body=b"=ZZ =4 =\r\n=G0 ==\r\n=",
    headers=[b"Content-Transfer-Encoding: quoted-printable"],
)
_simple(
    "qp_soft_breaks_only",
    "encodings",
    body=b"=\r\n" * 5000,
    headers=[b"Content-Transfer-Encoding: quoted-printable"],
)
_simple(
    "qp_long_encoded_line",
    "encodings",
    body=b"=41" * 30_000 + CRLF,
    headers=[b"Content-Transfer-Encoding: quoted-printable"],
)
_simple("cte_unknown", "encodings", headers=[b"Content-Transfer-Encoding: x-corpus-unknown"])
_simple(
    "cte_binary_random",
    "encodings",
    body=random.Random(2).randbytes(16 * KiB).replace(b"\n", b"").replace(b"\r", b""),
    content_type=b"application/octet-stream",
    headers=[b"Content-Transfer-Encoding: binary"],
)
_simple("charset_unknown", "encodings", content_type=b"text/plain; charset=x-no-such-charset")
_simple("charset_utf99", "encodings", content_type=b'text/plain; charset="utf-99"')
_simple(
    "charset_utf7_declared",
    "encodings",
    body=b"+AGEAYgBj- +ZeVnLIqe-\r\n",
    content_type=b"text/plain; charset=utf-7",
)
_simple(
    "charset_utf16_without_bom",
    "encodings",
    body="Hello Bob, the minutes are below.\r\n".encode("utf-16-le"),
    content_type=b"text/plain; charset=utf-16",
    headers=[b"Content-Transfer-Encoding: binary"],
)
_simple(
    "body_invalid_utf8",
    "encodings",
    body=b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80 invalid utf-8\r\n",
    content_type=b"text/plain; charset=utf-8",
    headers=[b"Content-Transfer-Encoding: 8bit"],
)
_simple("body_8bit_undeclared", "encodings", body=bytes(range(128, 256)) + CRLF + _CLEAN_TEXT)

# Raw 8-bit, invalid UTF-8 and control characters in headers.
_simple("hdr_subject_latin1", "8bit-headers", subject=b"Gr\xfc\xdfe aus K\xf6ln")
_simple(
    "hdr_subject_invalid_utf8",
    "8bit-headers",
    subject=b"\xff\xfe \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82",
)
_simple("hdr_subject_utf8", "8bit-headers", subject="Grüße, 東京".encode())
_simple(
    "hdr_subject_control_chars",
    "8bit-headers",
    subject=b"\x1b[31mred\x1b[0m \x07\x08\x0b\x0c\x7f \xc2\x85 \xe2\x80\xa8",
)
_simple(
    "hdr_from_display_latin1",
    "8bit-headers",
    from_=b"J\xf6rg M\xfcller <" + SENDER.encode() + b">",
    recipients=MANY_RECIPIENTS,
    note="the address is ours whatever the bytes of the name",
)
_simple(
    "hdr_from_domain_utf8_subdomain",
    "8bit-headers",
    from_="news@bücher.corpus.example".encode(),
    recipients=MANY_RECIPIENTS,
    note="a subdomain of the scanned domain, in UTF-8: known",
)
_simple(
    "hdr_from_domain_latin1",
    "8bit-headers",
    from_=b"news@corpus.ex\xe4mple",
    note="raw 8-bit domain: not ours, an unknown sender",
)
_simple(
    "hdr_from_domain_invalid_utf8_subdomain",
    "8bit-headers",
    from_=b"news@\xff\xfe.corpus.example",
    recipients=MANY_RECIPIENTS,
    note="an (undecodable) subdomain of the scanned domain: known",
)
_simple(
    "hdr_from_domain_latin1_many_rcpts",
    "8bit-headers",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b"news@k\xf6ln.attacker.test",
    recipients=MANY_RECIPIENTS,
)
_simple(
    "hdr_from_domain_escape_sequence",
    "8bit-headers",
    from_=b"news@corpus.example\x1b[2J\x1b[H",
    note="ESC sequences in the domain: not ours; the log must show them escaped",
)
_simple("hdr_from_domain_c1_control", "8bit-headers", from_="news@corp\x85us.example".encode())
_simple(
    "hdr_from_domain_line_separator",
    "8bit-headers",
    from_="news@corp\u2028us.example".encode(),
    note="U+2028 is a line break to Python's str.splitlines(): the log line must not break",
)
_simple("hdr_from_bare_cr_injection", "8bit-headers", from_=SENDER.encode() + b"\rX-Injected: yes")
_simple("hdr_to_8bit", "8bit-headers", headers=[b"Cc: M\xfcller <m\xfcller@dest.example>"])

# Encoded words (RFC 2047) used against parsers.
_simple("ew_huge_word", "encoded-words", subject=_encoded_word(b"A" * 60_000))
_simple(
    "ew_10000_words",
    "encoded-words",
    subject=_folded(_encoded_word(f"w{i}".encode()) for i in range(10_000)),
)
_simple(
    "ew_nested",
    "encoded-words",
    subject=_encoded_word(_encoded_word(_encoded_word(b"three levels deep"))),
)
_simple("ew_invalid_encoding_letter", "encoded-words", subject=b"=?utf-8?x?abc?= =?utf-8??abc?=")
_simple(
    "ew_unknown_charset", "encoded-words", subject=b"=?x-no-such-charset?q?abc?= =?utf-99?b?YWJj?="
)
_simple("ew_bad_base64", "encoded-words", subject=b"=?utf-8?b?!!!!?= =?utf-8?b?YW?= =?utf-8?b?=?=")
_simple("ew_unterminated", "encoded-words", subject=b"=?utf-8?q?abc =?utf-8?b?YWJj")
_simple(
    "ew_control_chars", "encoded-words", subject=b"=?utf-8?q?a=00b=0D=0AX-Injected:=20yes=1B[2J?="
)
_simple(
    "ew_in_from_display_spoof",
    "encoded-words",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b"=?utf-8?q?news=40corpus=2Eexample?= <evil@" + FOREIGN.encode() + b">",
    recipients=MANY_RECIPIENTS,
    note="the name decodes to our address; the address is not",
)
_simple(
    "ew_as_address",
    "encoded-words",
    from_=_encoded_word(SENDER.encode()),
    note="an encoded word where the address belongs has no domain",
)
_simple("ew_8bit_inside", "encoded-words", subject=b"=?utf-8?q?caf\xe9_=C3=A9?=")
_simple(
    "ew_filename_huge",
    "encoded-words",
    content_type=b'application/octet-stream; name="' + _encoded_word(b"x" * 20_000) + b'"',
    headers=[b"Content-Transfer-Encoding: 7bit"],
)

# From: headers: missing, multiple, spoofed. With one recipient every one of
# them is delivered; with six, an unknown sender is over its limit of five.
_FOREIGN_FROM = b"Evil <evil@" + FOREIGN.encode() + b">"
_simple(
    "from_missing",
    "from",
    from_=None,
    recipients=MANY_RECIPIENTS,
    note="no From: header: the envelope sender (ours) decides",
)
_simple("from_empty", "from", from_=b"")
_simple("from_group_syntax", "from", from_=b"undisclosed-recipients:;")
_simple("from_null_address", "from", from_=b"<>")
_simple("from_foreign", "from", from_=_FOREIGN_FROM)
_simple(
    "from_foreign_many_rcpts",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=_FOREIGN_FROM,
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_ours_then_foreign_header",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    headers=[b"From: " + _FOREIGN_FROM],
    recipients=MANY_RECIPIENTS,
    note="a second, foreign From: header makes the sender unknown",
)
_simple(
    "from_foreign_then_ours_header",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=_FOREIGN_FROM,
    headers=[b"From: " + SENDER.encode()],
    recipients=MANY_RECIPIENTS,
)
_simple("from_two_headers_one_rcpt", "from", headers=[b"From: " + _FOREIGN_FROM])
_simple(
    "from_uppercase_name_foreign",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    headers=[b"FROM: " + _FOREIGN_FROM],
    recipients=MANY_RECIPIENTS,
    note="header names are case-insensitive",
)
_simple(
    "from_display_name_is_our_address",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b'"' + SENDER.encode() + b'" <evil@' + FOREIGN.encode() + b">",
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_comment_is_our_address",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b"evil@" + FOREIGN.encode() + b" (" + SENDER.encode() + b")",
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_unquoted_address_as_name",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=SENDER.encode() + b" <evil@" + FOREIGN.encode() + b">",
    recipients=MANY_RECIPIENTS,
    note="mail readers show 'news@corpus.example'; the mailbox is evil@attacker.test",
)
_simple(
    "from_mailbox_list_ours_then_foreign",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=SENDER.encode() + b", evil@" + FOREIGN.encode(),
    recipients=MANY_RECIPIENTS,
    note="RFC 5322 allows several authors; one of them is not ours",
)
_simple(
    "from_lookalike_suffix",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b"news@" + DOMAIN.encode() + b"." + FOREIGN.encode(),
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_lookalike_prefix",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=b"news@evil" + DOMAIN.encode(),
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_subdomain_known",
    "from",
    from_=b"news@mail." + DOMAIN.encode(),
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_uppercase_trailing_dot_known",
    "from",
    from_=SENDER.upper().encode() + b".",
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_folded_known",
    "from",
    from_=b"Corpus\r\n News\r\n <" + SENDER.encode() + b">",
    recipients=MANY_RECIPIENTS,
)
_simple(
    "from_sender_header_ours_from_foreign",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    from_=_FOREIGN_FROM,
    headers=[b"Sender: " + SENDER.encode()],
    recipients=MANY_RECIPIENTS,
    note="Sender: does not decide; From: does",
)
_simple(
    "from_10000_headers_last_foreign",
    "from",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    headers=[b"From: " + SENDER.encode()] * 9_999 + [b"From: " + _FOREIGN_FROM],
    recipients=MANY_RECIPIENTS,
    note="every From: header counts, the last one too",
)
_simple("from_address_literal", "from", from_=b"news@[192.0.2.90]")
_simple("from_4k_display_name", "from", from_=b'"' + b"N" * 5000 + b'" <' + SENDER.encode() + b">")


# Archives: a zip bomb and broken archives.
def _with_attachment(
    name: str,
    payload: bytes | Callable[[], bytes],
    filename: bytes,
    content_type: bytes = b"application/octet-stream",
) -> Callable[[], bytes]:
    def build() -> bytes:
        data = payload() if callable(payload) else payload
        return _multipart_message(name, [_text_part(), _attachment(data, filename, content_type)])

    return build


_add(
    "zip_bomb_100mib",
    "archives",
    _with_attachment("zip_bomb_100mib", zip_bomb, b"zeros.zip", b"application/zip"),
    note="100 MiB of zeros: clamd stops at its MaxFileSize/MaxScanSize (70 MiB here) "
    "and reports it clean, which is what clamd's limits are for",
)
_add(
    "zip_truncated",
    "archives",
    _with_attachment(
        "zip_truncated", _zip([("a.txt", _CLEAN_TEXT * 50)])[:-30], b"cut.zip", b"application/zip"
    ),
)
_add(
    "zip_bad_crc",
    "archives",
    _with_attachment(
        "zip_bad_crc",
        _zip([("a.txt", b"A" * 1000)], zipfile.ZIP_STORED).replace(b"A" * 10, b"B" * 10, 1),
        b"crc.zip",
        b"application/zip",
    ),
)
_add(
    "zip_many_entries",
    "archives",
    _with_attachment(
        "zip_many_entries",
        lambda: _zip([(f"f{i}.txt", b"x") for i in range(2000)]),
        b"many.zip",
        b"application/zip",
    ),
)
_add(
    "gzip_not_really",
    "archives",
    _with_attachment(
        "gzip_not_really", b"\x1f\x8b\x08\x00garbage" * 100, b"x.gz", b"application/gzip"
    ),
)


# EICAR in several wrappings: clamd scans mail (ScanMail) and archives (ScanArchive).
def _eicar_multipart(
    name: str, parts: Sequence[bytes], subtype: bytes = b"mixed"
) -> Callable[[], bytes]:
    return lambda: _multipart_message(name, parts, subtype=subtype)


_add("eicar_plain_body", "eicar", lambda: _message("eicar_plain_body", EICAR + CRLF), Expect.VIRUS)
_add(
    "eicar_base64_attachment",
    "eicar",
    _with_attachment("eicar_base64_attachment", EICAR, b"eicar.com"),
    Expect.VIRUS,
)
_add(
    "eicar_zip_deflated",
    "eicar",
    _with_attachment(
        "eicar_zip_deflated", _zip([("eicar.com", EICAR)]), b"eicar.zip", b"application/zip"
    ),
    Expect.VIRUS,
)
_add(
    "eicar_zip_stored",
    "eicar",
    _with_attachment(
        "eicar_zip_stored",
        _zip([("eicar.com", EICAR)], zipfile.ZIP_STORED),
        b"eicar.zip",
        b"application/zip",
    ),
    Expect.VIRUS,
)
_add(
    "eicar_zip_in_zip",
    "eicar",
    _with_attachment(
        "eicar_zip_in_zip",
        _zip([("inner.zip", _zip([("eicar.com", EICAR)]))]),
        b"outer.zip",
        b"application/zip",
    ),
    Expect.VIRUS,
)
_add(
    "eicar_gzip",
    "eicar",
    _with_attachment(
        "eicar_gzip", gzip.compress(EICAR, mtime=0), b"eicar.com.gz", b"application/gzip"
    ),
    Expect.VIRUS,
)
_add(
    "eicar_tar",
    "eicar",
    _with_attachment("eicar_tar", _tar("eicar.com", EICAR), b"eicar.tar", b"application/x-tar"),
    Expect.VIRUS,
)
_add(
    "eicar_rfc822_nested",
    "eicar",
    _eicar_multipart(
        "eicar_rfc822_nested", [_text_part(), _rfc822(_message("eicar_inner", EICAR + CRLF))]
    ),
    Expect.VIRUS,
)
_add(
    "eicar_rfc822_attachment_nested_twice",
    "eicar",
    _eicar_multipart(
        "eicar_rfc822_attachment_nested_twice",
        [
            _text_part(),
            _rfc822(
                _multipart_message(
                    "eicar_middle",
                    [
                        _text_part(),
                        _rfc822(
                            _multipart_message(
                                "eicar_inner2", [_text_part(), _attachment(EICAR, b"eicar.com")]
                            )
                        ),
                    ],
                )
            ),
        ],
    ),
    Expect.VIRUS,
)
_add(
    "eicar_in_alternative",
    "eicar",
    _eicar_multipart(
        "eicar_in_alternative",
        [_text_part(), _part(EICAR + CRLF, b"text/html")],
        subtype=b"alternative",
    ),
    Expect.VIRUS,
)
_add(
    "eicar_in_alternative_base64",
    "eicar",
    _eicar_multipart(
        "eicar_in_alternative_base64",
        [_text_part(), _part(_b64(EICAR), b"text/plain", [b"Content-Transfer-Encoding: base64"])],
        subtype=b"alternative",
    ),
    Expect.VIRUS,
)
_add(
    "eicar_quoted_printable",
    "eicar",
    _eicar_multipart(
        "eicar_quoted_printable",
        [
            _text_part(),
            _part(
                _qp(EICAR),
                b"application/octet-stream",
                [b"Content-Transfer-Encoding: quoted-printable"],
            ),
        ],
    ),
    Expect.VIRUS,
)
_add(
    "eicar_uuencoded",
    "eicar",
    lambda: _message("eicar_uuencoded", _CLEAN_TEXT + _uuencode(EICAR, b"eicar.com")),
    Expect.VIRUS,
)


def _eicar_nested(name: str, depth: int) -> Callable[[], bytes]:
    def build() -> bytes:
        content_type, body = _nested(
            depth, _b64(EICAR), b"application/octet-stream", [b"Content-Transfer-Encoding: base64"]
        )
        return _message(name, body, content_type=content_type)

    return build


_add("eicar_nested_10", "eicar", _eicar_nested("eicar_nested_10", 10), Expect.VIRUS)
_add(
    "eicar_bare_lf",
    "eicar",
    lambda: _multipart_message(
        "eicar_bare_lf", [_text_part(), _attachment(EICAR, b"eicar.com")], eol=b"\n"
    ),
    Expect.VIRUS,
)
_add(
    "eicar_many_recipients",
    "eicar",
    _with_attachment("eicar_many_recipients", EICAR, b"eicar.com"),
    Expect.VIRUS,
    recipients=MANY_RECIPIENTS,
)
_add(
    "eicar_and_gtube",
    "eicar",
    lambda: _multipart_message(
        "eicar_and_gtube", [_text_part(GTUBE + CRLF), _attachment(EICAR, b"eicar.com")]
    ),
    Expect.VIRUS,
    note="virus and spam: the virus answer wins",
)
_add(
    "eicar_after_broken_boundary",
    "eicar",
    lambda: _message(
        "eicar_after_broken_boundary",
        b"--"
        + _BROKEN
        + CRLF
        + _text_part()
        + b"--"
        + _BROKEN
        + CRLF
        + _attachment(EICAR, b"eicar.com"),
        content_type=b'multipart/mixed; boundary="' + _BROKEN + b'"',
    ),
    Expect.VIRUS,
)
_add(
    "marker_signature_in_body",
    "eicar",
    lambda: _message("marker_signature_in_body", _CLEAN_TEXT + MARKER + CRLF),
    Expect.VIRUS,
    note="the harness's own logical signature",
)

# GTUBE: SpamAssassin scores it 1000 in any text part it decodes.
_simple("gtube_plain", "gtube", Expect.SPAM, body=GTUBE + CRLF)
_simple(
    "gtube_base64_text",
    "gtube",
    Expect.SPAM,
    body=_b64(GTUBE + CRLF),
    headers=[b"Content-Transfer-Encoding: base64"],
)
_simple(
    "gtube_quoted_printable",
    "gtube",
    Expect.SPAM,
    body=_qp(GTUBE + CRLF),
    headers=[b"Content-Transfer-Encoding: quoted-printable"],
)
_add(
    "gtube_in_alternative",
    "gtube",
    lambda: _multipart_message(
        "gtube_in_alternative",
        [_text_part(GTUBE + CRLF), _part(b"<p>" + GTUBE + b"</p>\r\n", b"text/html")],
        subtype=b"alternative",
    ),
    Expect.SPAM,
)
_simple("gtube_bare_lf", "gtube", Expect.SPAM, body=GTUBE + CRLF, eol=b"\n")
_simple(
    "gtube_many_recipients_unknown_sender",
    "gtube",
    Expect.UNKNOWN_SENDER_RECIPIENTS,
    body=GTUBE + CRLF,
    from_=_FOREIGN_FROM,
    recipients=MANY_RECIPIENTS,
    note="the recipient limit is decided before the message is scanned",
)
_add(
    "gtube_in_octet_stream",
    "gtube",
    _with_attachment("gtube_in_octet_stream", GTUBE + CRLF, b"gtube.txt"),
    Expect.SCORED,
    note="SpamAssassin reads no application/octet-stream part (no ExtractText plugin): "
    "not GTUBE to it",
)

# Heavy content for the spam engine's parsers.
# SpamAssassin 4.0.1 needs about 70 s for 20,000 nested <div>s (quadratic), which is
# spamd's problem, not the milter's (it answers 451 4.7.1 when spamd times out); 2,000
# keep the parser busy for a fraction of a second.
_add(
    "html_nested_2000_tags",
    "parser-load",
    lambda: _message(
        "html_nested_2000_tags",
        b"<html><body>" + b"<div>" * 2_000 + b"hello" + b"</div>" * 2_000 + b"</body></html>\r\n",
        content_type=b"text/html",
    ),
)
_simple(
    "uri_100k",
    "parser-load",
    body=b"see http://dest.example/" + b"a" * 100_000 + CRLF + _CLEAN_TEXT,
)
_simple(
    "uri_5000",
    "parser-load",
    body=b"".join(f"http://host{i}.dest.example/p\r\n".encode() for i in range(5000)),
)

# SIZE= is a hint: over the limit it refuses at MAIL, under the truth it proves nothing.
_add(
    "size_declared_over_limit",
    "size",
    lambda: _message("size_declared_over_limit"),
    Expect.OVERSIZE,
    declared_size=SIZE_LIMIT + 1,
)
_add(
    "size_declared_understated",
    "size",
    lambda: _message("size_declared_understated", _CLEAN_TEXT * 100),
    declared_size=10,
)
_add(
    "size_declared_at_limit",
    "size",
    lambda: _message("size_declared_at_limit"),
    declared_size=SIZE_LIMIT,
)


# The public samples -------------------------------------------------------------------


def samples_dir() -> Path:
    return Path(os.environ.get(SAMPLES_ENV) or DEFAULT_SAMPLES)


def _sample_files(directory: Path) -> list[Path]:
    """The sample files under directory, in name order; none if it does not exist."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file())


def samples_required() -> bool:
    """Whether this run must use the public samples: CI says so with CI=true."""
    return os.environ.get(CI_ENV, "").strip().lower() in {"true", "1", "yes"}


def samples_problem() -> str | None:
    """Why this run lacks the public samples it must use; None when nothing is amiss.

    Without the samples the corpus is the generated messages alone, which is
    enough for a plain clone; CI must not pass on a corpus quietly shrunk.
    """
    directory = samples_dir()
    if not samples_required() or _sample_files(directory):
        return None
    return (
        f"{CI_ENV}=true, but there are no public mail samples at {directory}: "
        f"put shared/mail-samples beside the repository or set ${SAMPLES_ENV}"
    )


def _text_parts_contain(data: bytes, needle: bytes) -> bool:
    """Whether a decoded text/* part holds ``needle``: what SpamAssassin's body rules read."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and needle in payload.replace(b"\r\n", b"\n"):
            return True
    return False


def _carries_eicar(data: bytes) -> bool:
    """EICAR anywhere: raw, in a decoded part, or in a zip in a decoded part."""
    if EICAR in data:
        return True
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if EICAR in payload:
            return True
        if zipfile.is_zipfile(io.BytesIO(payload)):
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                if any(
                    EICAR in archive.read(info)
                    for info in archive.infolist()
                    if info.file_size < MiB and not info.flag_bits & 0x1
                ):
                    return True
    return False


def _sample_expectation(relative: str, data: bytes) -> Expect:
    """EICAR is a virus (rspamd's broken_richtext.eml carries it zipped, in a base64
    text/richtext part); GTUBE in a text part is spam; SpamAssassin's ham samples are
    delivered; the rest (spam samples without GTUBE, parser test messages) is judged
    by its score."""
    if _carries_eicar(data):
        return Expect.VIRUS
    if _text_parts_contain(data, GTUBE):
        return Expect.SPAM
    if relative.startswith("spamassassin/nice_"):
        return Expect.DELIVERED
    return Expect.SCORED


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def sample_entries(directory: Path | None = None) -> list[CorpusEntry]:
    """Every file under the samples directory, read as bytes, in name order.

    None when the directory does not exist (:func:`samples_problem` says
    whether that is allowed).
    """
    directory = directory or samples_dir()
    entries = []
    for path in _sample_files(directory):
        relative = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        name = "sample_" + "".join(c if c.isalnum() else "_" for c in relative)
        entries.append(
            CorpusEntry(
                name,
                "sample:" + relative.split("/")[0],
                _sample_expectation(relative, data),
                _constant(data),
            )
        )
    return entries


def sample_from_domains(directory: Path | None = None) -> list[str]:
    """The From: domains of the public samples, to register so their senders are known."""
    domains: set[str] = set()
    for entry in sample_entries(directory):
        message = email.message_from_bytes(entry.data(), policy=email.policy.compat32)
        for value in message.get_all("From", []):
            for _, address in email.utils.getaddresses([str(value)]):
                _, at, domain = address.rpartition("@")
                domain = domain.strip().rstrip(".").lower()
                if at and domain.isascii() and "." in domain:
                    domains.add(domain)
    return sorted(domains)


def generated_entries() -> list[CorpusEntry]:
    return list(_ENTRIES)


@cache
def corpus() -> tuple[CorpusEntry, ...]:
    """The whole corpus: the public samples (if any), then the generated messages.

    Names are unique.
    """
    entries = (*sample_entries(), *generated_entries())
    names = [e.name for e in entries]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, duplicates
    return entries


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rows = ["name\tcategory\texpect\trecipients\tdeclared_size\tbytes\tnote"]
    for entry in corpus():
        data = entry.data()
        (directory / f"{entry.name}.eml").write_bytes(data)
        rows.append(
            f"{entry.name}\t{entry.category}\t{entry.expect}\t{entry.recipients}\t"
            f"{entry.declared_size or ''}\t{len(data)}\t{entry.note}"
        )
    (directory / "index.tsv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.corpus.generate DIRECTORY")
    write(Path(sys.argv[1]))

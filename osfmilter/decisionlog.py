"""One log line per decision, ``key=value`` or JSON, carrying the queue id.

An operator greps the Postfix log for a queue id and finds the same id here.
Values come from the network, so control characters are escaped and every
record stays on one line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

log = logging.getLogger("osfmilter.decision")

_NEEDS_QUOTES = re.compile(r'[\s"=\\]')
# C0 controls, DEL and C1 controls; U+2028/U+2029, which str.splitlines() and
# many log viewers take for line breaks; lone surrogates (undecodable bytes from
# the network), which a UTF-8 log handler cannot write.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    """Control characters as Python writes them (\\t \\n \\r, else \\xNN; line
    separators and surrogates \\uNNNN), so hostile input cannot forge a log line
    nor send a terminal escape sequence."""
    return _CONTROL.sub(_escaped, value)


def format_fields(fields: Mapping[str, object], as_json: bool = False) -> str:
    if as_json:
        return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=True)
    parts = []
    for key, value in fields.items():
        if value is None or value == "":
            continue
        text = str(value)
        if _NEEDS_QUOTES.search(text) or _CONTROL.search(text):
            text = '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class DecisionLog:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def decision(self, fields: Mapping[str, object]) -> None:
        log.info("%s", format_fields(fields, self.as_json))

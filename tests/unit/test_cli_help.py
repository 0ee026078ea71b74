"""``osfmilter ... --help`` is read in a terminal: plain text, no reStructuredText."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from osfmilter.cli import build_parser, main

# Inline literals and interpreted text (``x``, `x`, :role:`x`, `x`_), strong
# emphasis, a literal block's "::" and directives.
RST_MARKUP = re.compile(r"`|\*\*|::$|^\s*\.\. ", re.MULTILINE)


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command and group, the top level included, as (its words, its parser)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, str(name)))


ALL = list(commands(build_parser()))


def test_every_command_is_visited() -> None:
    words = {" ".join(path) for path, _ in ALL}
    assert {"", "run", "server list", "server release", "report states", "db purge"} <= words
    assert len(ALL) > 35


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda p: " ".join(p) or "-")
def test_help_is_plain_text(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: osfmilter")
    assert RST_MARKUP.findall(text) == [], text

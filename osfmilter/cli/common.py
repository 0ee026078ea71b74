"""What the command modules share: the parser's shape, the database as a command
opens it, and the argument types."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from osfmilter.config import Config
from osfmilter.errors import UsageError
from osfmilter.storage.db import Access, make_engine, prepare_schema, require_schema
from osfmilter.storage.store import SqlStore

Handler = Callable[[argparse.Namespace, Config], int]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    # A command group's own commands (see group), for modules that add to it.
    subcommands: argparse._SubParsersAction[Parser] | None = None

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# The commands of the tool or of one group, as argparse holds them.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


def command(commands: Commands, name: str, handler: Handler, help_: str) -> Parser:
    parser = commands.add_parser(name, help=help_, description=help_)
    parser.set_defaults(handler=handler)
    return parser


def group(commands: Commands, name: str, help_: str) -> Commands:
    """A new group of commands (``osfmilter NAME ...``)."""
    parser = commands.add_parser(name, help=help_, description=help_)
    parser.subcommands = parser.add_subparsers(
        dest=f"{name}_command", required=True, parser_class=Parser
    )
    return parser.subcommands


def group_of(commands: Commands, name: str) -> Commands:
    """The commands of a group that another module made."""
    subcommands = commands.choices[name].subcommands
    assert subcommands is not None, f"{name} is a command, not a group"
    return subcommands


# Commands that only look use Access.READ_ONLY: they never create a database,
# upgrade its schema or write to it, and say which database they looked for.
# Commands that change rows that must be there already (plan, remove,
# release, block, history, purge) use Access.EXISTING: they write, but to a
# database that exists with its schema up to date, and never create one.
# Only the commands that register something, and `db upgrade`, use CREATE:
# they make and upgrade the embedded SQLite database the way `osfmilter run`
# does.


@contextmanager
def engine(config: Config, access: Access = Access.CREATE) -> Iterator[Engine]:
    engine = make_engine(config.database_url, config.database.timeout, access)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def store(config: Config, access: Access) -> Iterator[SqlStore]:
    """A store on a schema that is up to date: upgraded if CREATE allows, else required."""
    with engine(config, access) as bound:
        store = SqlStore(bound)
        if access is Access.CREATE:
            prepare_schema(store.engine, config.database_url)
        else:
            require_schema(bound, config.database_url)
        yield store


@contextmanager
def session(
    config: Config, access: Access = Access.CREATE, locked: bool = False
) -> Iterator[Session]:
    """One transaction against a schema that is up to date; commits if no error.

    ``locked``: SQLite's write lock from the start, for a check that must
    still hold when its insert commits.
    """
    with store(config, access) as opened, opened.session(locked=locked) as transaction:
        yield transaction


_DURATION = re.compile(r"^([1-9][0-9]{0,5})([dh])$")
# The longest duration back from now: a century, in days or in hours.
MAX_DURATION = {"d": 36_500, "h": 36_500 * 24}
# The largest --limit or --batch-size.
MAX_COUNT = 1_000_000


def duration(text: str) -> timedelta:
    """Nd or Nh (N from 1, at most a century), e.g. 400d."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not a duration (Nd or Nh with N >= 1, e.g. 400d or 12h)")
    amount, unit = int(match[1]), match[2]
    if amount > MAX_DURATION[unit]:
        raise UsageError(f"{text!r} is too long a duration: at most {MAX_DURATION[unit]}{unit}")
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


def ago(text: str, now: datetime) -> datetime:
    """The moment a duration (Nd or Nh) back from now."""
    age = duration(text)
    try:
        return now - age
    except OverflowError:
        raise UsageError(f"{text!r} back from now is before the year 1") from None


def since(text: str, now: datetime) -> datetime:
    """A duration back from now (7d, 12h), a date (UTC midnight) or an ISO time (UTC if naive)."""
    if _DURATION.match(text.strip()):
        return ago(text, now)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a date (YYYY-MM-DD), a time (YYYY-MM-DDTHH:MM) "
            "nor a duration (Nd or Nh)"
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise UsageError(f"{text!r} is out of range in UTC (years 1 to 9999)") from None


MAX_SECONDS = 3600.0


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above 0 and at most an hour."""
    try:
        value = float(text) if len(text) <= 20 else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_SECONDS:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def positive(text: str) -> int:
    """argparse type: a whole number from 1 to MAX_COUNT, in ASCII digits."""
    # The length first: int() of a string of thousands of digits is slow, then refused.
    if not (
        len(text) <= len(str(MAX_COUNT))
        and text.isascii()
        and text.isdigit()
        and 1 <= int(text) <= MAX_COUNT
    ):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {MAX_COUNT}")
    return int(text)


# More than any secret a command takes; what is past it is refused, not cut.
MAX_SECRET = 4096


def read_secret_stdin(what: str) -> str:
    """A secret from standard input: typed without echo on a terminal, else piped.

    One trailing line break is dropped (``echo secret |``); anything else is
    the secret as given, for the caller to judge.
    """
    stdin = sys.stdin
    if stdin is None:  # started with standard input closed
        raise UsageError(f"no {what} on standard input: it is closed")
    if stdin.isatty():
        secret = getpass.getpass(f"{what}: ")
        # Typed blind: a typo would set a secret nobody knows.
        if getpass.getpass(f"{what} again: ") != secret:
            raise UsageError(f"the two {what}s typed differ")
        return secret
    raw = (
        stdin.buffer.read(MAX_SECRET + 1)
        if hasattr(stdin, "buffer")
        else stdin.read(MAX_SECRET + 1)
    )
    if len(raw) > MAX_SECRET:
        raise UsageError(f"the {what} on standard input is longer than {MAX_SECRET} characters")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise UsageError(f"the {what} on standard input is not UTF-8 text") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise UsageError(f"no {what} on standard input")
    return secret

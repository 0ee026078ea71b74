"""The ``osfmilter`` command line: run the milter and administer registrations.

Every failure the user can act on is one line on stderr: exit status 2 for
bad input or configuration, 1 when a dependency (the database) failed.

Each command group is a module with its parser next to its handlers
(``register(commands)``); :mod:`osfmilter.cli.output` prints every report.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from osfmilter import __version__
from osfmilter.cli import db, dkim, notify, registry, reports, reputation, service, spf, users
from osfmilter.cli.common import Handler, Parser
from osfmilter.config import CONFIG_ENV, Config, load_config
from osfmilter.errors import DependencyError, OsfError
from osfmilter.logsetup import setup_logging
from osfmilter.storage.db import make_url_safe

log = logging.getLogger("osfmilter")
# --help is read in a terminal: plain text, not the docstrings' reStructuredText.
DESCRIPTION = "The osfmilter command line: run the milter and administer registrations."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        setup_logging(config)
        warn_about_exposed_secrets(config, args.config or os.environ.get(CONFIG_ENV))
        handler: Handler = args.handler
        status = handler(args, config)
        sys.stdout.flush()  # a reader that went away is found here, not at exit
        return status
    except BrokenPipeError:
        # `osfmilter report bill | head`: nothing more to say to it. What is
        # still buffered goes to /dev/null, so the interpreter's flush at
        # exit does not fail again.
        _stdout_to_devnull()
        return 1
    except DependencyError as exc:
        print(f"osfmilter: {exc.backend} error: {exc}", file=sys.stderr)
        return 1
    except OsfError as exc:
        print(f"osfmilter: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stdout_to_devnull() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture)
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - for the rest of the process
    finally:
        os.close(devnull)


def warn_about_exposed_secrets(config: Config, path: str | None) -> None:
    """A password in a world-readable config file is everyone's password."""
    if not path:
        return
    keys = [
        key
        for key, has_password in (
            ("[database] url", make_url_safe(config.database_url).password is not None),
            ("[rates] redis_url", _url_has_password(config.rates.redis_url)),
        )
        if has_password
    ]
    if keys and Path(path).stat().st_mode & 0o004:
        log.warning(
            "config file %s holds a password (%s) and is world-readable; chmod o-r it",
            path,
            ", ".join(keys),
        )


def _url_has_password(url: str) -> bool:
    """redis://:secret@host, redis://user:secret@host or ...?password=secret."""
    parts = urlsplit(url)
    return bool(parts.password) or "password" in parse_qs(parts.query)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="osfmilter", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"osfmilter {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="TOML config file (default: $OSFMILTER_CONFIG, else none)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    # In the order --help lists them; reputation adds to registry's server group.
    for module in (service, db, registry, reputation, notify, users, spf, dkim, reports):
        module.register(commands)
    return parser

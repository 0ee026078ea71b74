"""``osfmilter run``, ``web`` and ``check-config``: the milter, the API, and the settings
around them."""

from __future__ import annotations

import argparse
from pathlib import Path

from osfmilter.cli.common import Commands, command
from osfmilter.config import Config

CLAMD_CONFIG_HINT = "/etc/clamav/clamd.conf, when [clamav] address is set"


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.milter.runner import run

    run(config)
    return 0


def cmd_web(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.web.server import serve

    serve(config)
    return 0


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.checkconfig import lint

    findings = lint(
        config, args.postfix_config, Path(args.clamd_config) if args.clamd_config else None
    )
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == "error")
    print(
        f"configuration is valid; {errors} problem(s) around it"
        if errors
        else "configuration is valid"
    )
    return 2 if errors else 0


def register(commands: Commands) -> None:
    command(commands, "run", cmd_run, "run the milter")
    command(commands, "web", cmd_web, "serve the JSON API on [web] listen")
    p = command(
        commands,
        "check-config",
        cmd_check_config,
        "validate the configuration, and Postfix's and clamd's settings around it",
    )
    p.add_argument(
        "--postfix-config",
        metavar="DIR",
        help="Postfix config directory to check (default: the system's)",
    )
    p.add_argument(
        "--clamd-config", metavar="FILE", help=f"clamd.conf to check (default: {CLAMD_CONFIG_HINT})"
    )

"""``osfmilter run``, ``web`` and ``check-config``: the milter, the API, and the settings
around them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from osfmilter.cli import common
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


def cmd_health(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.probes import document, healthy, probe_all

    probes = probe_all(config, args.timeout)
    if args.json:
        print(json.dumps(document(probes)))
    else:
        width = max(len(p.backend) for p in probes)
        for p in probes:
            latency = "-" if p.latency is None else f"{p.latency * 1000:.1f} ms"
            print(f"{p.backend:<{width}}  {p.state:<4}  {latency:>9}  {p.detail}")
    # 1, as for any dependency that failed: the backends, not the command, are at fault.
    return 0 if healthy(probes) else 1


def register(commands: Commands) -> None:
    command(commands, "run", cmd_run, "run the milter")
    command(commands, "web", cmd_web, "serve the JSON API on [web] listen")
    p = command(
        commands,
        "health",
        cmd_health,
        "probe each configured backend (database, clamd, spam engine, DNS, Redis); "
        "exit 0 only when all answer",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--timeout",
        type=common.positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long each backend may take to answer (default 5)",
    )
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

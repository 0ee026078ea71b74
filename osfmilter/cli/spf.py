"""``osfmilter spf check``: whether a customer's domain lets the relay pass SPF."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from osfmilter.cli.common import Commands, command, group
from osfmilter.config import Config

if TYPE_CHECKING:
    from osfmilter.spf.advisor import Advice


def spf_advice(config: Config, domain_text: str) -> Advice:
    """The SPF advice for a domain, with the configured relay addresses and resolvers."""
    from osfmilter.domains.check import spf_advice as advice

    return advice(config.spf, domain_text)


def cmd_spf_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.spf.advisor import render_json, render_text

    advice = spf_advice(config, args.domain)
    print(render_json(advice) if args.json else render_text(advice))
    # 1 for both: the relay is not authorized, or DNS could not say (temperror).
    return 0 if advice.passes else 1


def register(commands: Commands) -> None:
    spf = group(commands, "spf", "SPF of customers' domains")
    p = command(
        spf,
        "check",
        cmd_spf_check,
        "show a domain's SPF record, whether the relay passes, and what to publish",
    )
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")

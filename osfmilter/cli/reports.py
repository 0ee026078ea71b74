"""``osfmilter report`` (volume, bill, refusals, states) and ``osfmilter inbound import``,
the inbound volume the volume report's allowances are earned with.

Every report prints through one :func:`~osfmilter.cli.output.render`: a
table, or with ``--csv``/``--json`` the same rows for programs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from osfmilter import reports
from osfmilter.cli import common
from osfmilter.cli.common import Commands, command, group
from osfmilter.cli.output import Report, Table, add_formats, fields, record, render, when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.errors import UsageError
from osfmilter.limits.volume import month_of, parse_month
from osfmilter.registration import parse_inbound_csv
from osfmilter.reputation import Rules
from osfmilter.storage import admin, audit
from osfmilter.storage.db import Access


def cmd_inbound_import(args: argparse.Namespace, config: Config) -> int:
    try:
        with Path(args.file).open(newline="", encoding="utf-8") as handle:
            rows = parse_inbound_csv(handle, args.file)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    with common.session(config) as session:
        count = admin.import_inbound(session, rows)
    print(f"imported inbound volume for {count} domain-month(s) from {args.file}")
    return 0


def cmd_report_volume(args: argparse.Namespace, config: Config) -> int:
    month = parse_month(args.month or month_of(SystemClock().now()))
    with common.session(config, Access.READ_ONLY) as session:
        rows = reports.volume(session, month, config.plans)
    records = [record(r, use_percent=r.use_percent) for r in rows]
    unlimited = {"allowance": "unlimited"}
    headers = ("customer", "plan", "domain", "messages", "bytes", "inbound", "allowance", "use")
    cells = [
        (
            r.customer,
            r.plan,
            r.domain or "(unknown senders)",
            r.messages,
            r.bytes,
            r.inbound_bytes if r.domain else "-",
            "unlimited" if r.allowance is None else r.allowance,
            "-" if r.use_percent is None else f"{r.use_percent:.1f}%",
        )
        for r in rows
    ]
    report = Report(
        document={"month": month, "rows": records},
        records=[
            {"month": month, **r, **(unlimited if r["allowance"] is None else {})} for r in records
        ],
        fields=["month", *fields(reports.VolumeRow), "use_percent"],
        text=[Table(headers, cells)],
    )
    render(args, report)
    return 0


def cmd_report_bill(args: argparse.Namespace, config: Config) -> int:
    month = parse_month(args.month or month_of(SystemClock().now()))
    with common.session(config, Access.READ_ONLY) as session:
        rows = reports.bill(session, month, config.billing)
    records = [record(r) for r in rows]
    currency = config.billing.currency
    cells = [
        (r.customer, r.plan, r.messages, r.bytes, r.extra_gb, f"{r.amount} {currency}")
        for r in rows
    ]
    report = Report(
        document={"month": month, "currency": currency, "rows": records},
        records=[{"month": month, **r} for r in records],
        fields=["month", *fields(reports.BillRow)],
        text=[
            Table(("customer", "plan", "messages", "bytes", "extra GB", "amount"), cells),
            f"total {month}: {sum(r.amount for r in rows)} {currency}",
        ],
    )
    render(args, report)
    return 0


def cmd_report_refused(args: argparse.Namespace, config: Config) -> int:
    since = common.since(args.since, SystemClock().now())
    with common.session(config, Access.READ_ONLY) as session:
        rows = reports.refusals(session, since, args.limit)
    records = [record(r) for r in rows]
    cells = [(r.identity, r.customer or "-", r.reason, r.count, when(r.last_at)) for r in rows]
    report = Report(
        document={"since": when(since), "rows": records},
        records=records,
        fields=fields(reports.RefusalRow),
        text=[
            f"refusals since {when(since)}",
            Table(("identity", "customer", "reason", "count", "last seen"), cells),
        ],
    )
    render(args, report)
    return 0


def cmd_report_states(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        states = reports.states(session, Rules.from_config(config.reputation))
    records = [record(r) for r in states.identities]
    text: list[str | Table] = [Table(("state", "identities"), list(states.counts.items()))]
    if states.identities:
        headers = ("identity", "customer", "state", "since", "veilig again at", "by", "last reason")
        cells = [
            (
                r.identity,
                r.customer,
                r.state,
                when(r.since),
                when(r.veilig_again_at) if r.veilig_again_at else "-",
                r.last_actor or "-",
                r.last_reason or "-",
            )
            for r in states.identities
        ]
        text += ["", Table(headers, cells)]
    report = Report(
        document={"counts": states.counts, "identities": records},
        records=records,
        fields=fields(reports.StateRow),
        text=text,
    )
    render(args, report)
    return 0


AUDIT_FIELDS = ("at", "actor", "via", "address", "customer", "action", "target", "detail")


def cmd_report_audit(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        customer_id = admin.get_customer(session, args.customer).id if args.customer else None
        rows = [
            (when(e.at), e.actor, e.via, e.remote_addr, e.customer, e.action, e.target, e.detail)
            for e in audit.entries(session, customer_id=customer_id, limit=args.limit)
        ]
    records = [dict(zip(AUDIT_FIELDS, row, strict=True)) for row in rows]
    shown = [tuple(cell or "-" for cell in row) for row in rows]
    report = Report(
        document={"entries": records},
        records=records,
        fields=AUDIT_FIELDS,
        text=[Table(AUDIT_FIELDS, shown)] if rows else ["no changes recorded"],
    )
    render(args, report)
    return 0


def register(commands: Commands) -> None:
    inbound = group(commands, "inbound", "inbound volume (it raises a free domain's allowance)")
    p = command(
        inbound,
        "import",
        cmd_inbound_import,
        "set inbound volume from a CSV file of domain,month,bytes rows",
    )
    p.add_argument("file", metavar="FILE.csv")

    report = group(
        commands,
        "report",
        "volume, bill, refusals, states and the audit log (also SQL views report_*)",
    )
    p = command(
        report,
        "volume",
        cmd_report_volume,
        "outbound volume per customer and domain, with the allowance and its use",
    )
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month, UTC (default: this one)")
    add_formats(p)
    p = command(report, "bill", cmd_report_bill, "the price of each customer's month")
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month, UTC (default: this one)")
    add_formats(p)
    p = command(
        report, "refused", cmd_report_refused, "the identities refused most often, per reason"
    )
    p.add_argument(
        "--since",
        default="7d",
        metavar="DATE|DURATION",
        help="YYYY-MM-DD (UTC), an ISO time, or Nd/Nh back from now (default 7d)",
    )
    p.add_argument(
        "--limit", type=common.positive, default=20, metavar="N", help="at most N rows (default 20)"
    )
    add_formats(p)
    p = command(
        report, "states", cmd_report_states, "identities per state, and each one that is not veilig"
    )
    add_formats(p)
    p = command(
        report,
        "audit",
        cmd_report_audit,
        "changes made through the portal and the API, newest first: who, when, from where",
    )
    p.add_argument("--customer", metavar="NAME", help="only this customer's")
    p.add_argument(
        "--limit", type=common.positive, default=50, metavar="N", help="at most N rows (default 50)"
    )
    add_formats(p)

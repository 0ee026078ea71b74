"""The ``osfmilter`` command line: run the milter and administer registrations.

Every failure the user can act on is one line on stderr: exit status 2 for
bad input or configuration, 1 when a dependency (the database) failed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from osfmilter import __version__, reports
from osfmilter.clock import SystemClock
from osfmilter.config import CONFIG_ENV, Config, PlanName, load_config
from osfmilter.errors import DependencyError, OsfError, UsageError
from osfmilter.logsetup import setup_logging
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation import SYSTEM, OperatorActionKind, Rules, Standing, Transition
from osfmilter.storage import admin, retention
from osfmilter.storage.db import (
    Access,
    make_engine,
    make_url_safe,
    prepare_schema,
    require_schema,
    safe_url,
    schema_status,
    upgrade,
)
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import Customer, SaslAccount, ScannedDomain, SmtpServer
from osfmilter.storage.store import SqlStore

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Handler = Callable[[argparse.Namespace, Config], int]

log = logging.getLogger("osfmilter")
CLAMD_CONFIG_HINT = "/etc/clamav/clamd.conf, when [clamav] address is set"
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
        return handler(args, config)
    except DependencyError as exc:
        print(f"osfmilter: {exc.backend} error: {exc}", file=sys.stderr)
        return 1
    except OsfError as exc:
        print(f"osfmilter: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# Helpers -------------------------------------------------------------------


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


# Commands that only look use Access.READ_ONLY: they never create a database,
# upgrade its schema or write to it, and say which database they looked for.
# Writing commands (CREATE) make and upgrade the embedded SQLite database the
# way `osfmilter run` does.


@contextmanager
def _engine(config: Config, access: Access = Access.CREATE) -> Iterator[Engine]:
    engine = make_engine(config.database_url, config.database.timeout, access)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _store(config: Config, access: Access) -> Iterator[SqlStore]:
    """A store on a schema that is up to date: upgraded if CREATE allows, else required."""
    with _engine(config, access) as engine:
        store = SqlStore(engine)
        if access is Access.CREATE:
            prepare_schema(store.engine, config.database_url)
        else:
            require_schema(engine, config.database_url)
        yield store


@contextmanager
def _transaction(
    config: Config, access: Access = Access.CREATE, locked: bool = False
) -> Iterator[Session]:
    """One transaction against a schema that is up to date; commits if no error.

    ``locked``: SQLite's write lock from the start, for a check that must
    still hold when its insert commits.
    """
    with _store(config, access) as store, store.session(locked=locked) as session:
        yield session


@contextmanager
def _reputation(
    config: Config, access: Access = Access.CREATE
) -> Iterator[tuple[SqlStore, ReputationStore]]:
    """The stores behind the state commands, against a schema that is up to date."""
    with _store(config, access) as store:
        rules = Rules.from_config(config.reputation)
        yield store, ReputationStore(store.engine, SystemClock(), rules)


def _sender(store: SqlStore, text: str) -> admin.Sender:
    with store.session() as session:
        return admin.find_sender(session, text)


def _describe(sender: admin.Sender) -> str:
    return f"{'SMTP server' if sender.kind is IdentityKind.SERVER else 'SASL login'} {sender.name}"


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


_DURATION = re.compile(r"^([1-9][0-9]{0,5})([dh])$")


def _duration(text: str) -> timedelta:
    """Nd or Nh (N from 1), e.g. 400d."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not a duration (Nd or Nh with N >= 1, e.g. 400d or 12h)")
    amount = int(match[1])
    return timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)


def _since(text: str, now: datetime) -> datetime:
    """A duration back from now (7d, 12h), a date (UTC midnight) or an ISO time (UTC if naive)."""
    if _DURATION.match(text.strip()):
        return now - _duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a date (YYYY-MM-DD), a time (YYYY-MM-DDTHH:MM) "
            "nor a duration (Nd or Nh)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _positive(text: str) -> int:
    """argparse type: a whole number from 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _plain(value: object) -> object:
    """A value as JSON and CSV carry it: times in ISO 8601."""
    return _when(value) if isinstance(value, datetime) else value


def _record(row: DataclassInstance, **extra: object) -> dict[str, object]:
    fields = dataclasses.asdict(row)
    return {key: _plain(value) for key, value in {**fields, **extra}.items()}


def _print_csv(records: Sequence[Mapping[str, object]], fields: Sequence[str]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record[k] is None else record[k] for k in fields})


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _output(args: argparse.Namespace) -> str:
    return "json" if args.json else "csv" if args.csv else "text"


# Commands ------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.milter.runner import run

    run(config)
    return 0


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    with _engine(config) as engine:
        upgrade(engine, args.revision)
        current, _ = schema_status(engine)
    print(f"database {safe_url(config.database_url)} is at revision {current}")
    return 0


def cmd_db_status(args: argparse.Namespace, config: Config) -> int:
    with _engine(config, Access.READ_ONLY) as engine:
        current, head = schema_status(engine)
    state = "up to date" if current == head else f"needs upgrade to {head}"
    print(f"database {safe_url(config.database_url)}: revision {current or 'none'} ({state})")
    return 0 if current == head else 1


def cmd_db_purge(args: argparse.Namespace, config: Config) -> int:
    age = _duration(args.older_than)
    now = SystemClock().now()
    events_before = now - age
    slots_before = retention.slot_cutoff(now, config.rates.window, config.rates.reservation_ttl)
    with _store(config, Access.READ_ONLY if args.dry_run else Access.CREATE) as store:
        if args.dry_run:
            result = retention.count(store.engine, events_before, slots_before)
        else:
            result = retention.purge(store.engine, events_before, slots_before, args.batch_size)
    verb = "would remove" if args.dry_run else "removed"
    batches = "" if args.dry_run else f" in {result.batches} batch(es)"
    print(
        f"{verb} {result.events} event(s) older than {_when(events_before)} "
        f"and {result.rate_slots} expired rate slot(s){batches}"
    )
    return 0


def cmd_customer_add(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.add_customer(session, args.name, args.plan, SystemClock().now())
    print(f"customer {args.name} added (plan {args.plan})")
    return 0


def cmd_customer_plan(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.set_plan(session, args.name, args.plan)
    print(f"customer {args.name} is now on plan {args.plan}")
    return 0


def cmd_customer_list(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        customers = session.scalars(select(Customer).order_by(Customer.name)).all()
        rows = [
            (c.name, c.plan, len(c.domains), len(c.servers), len(c.sasl_accounts))
            for c in customers
        ]
    _table(("customer", "plan", "domains", "servers", "sasl"), rows)
    return 0


def cmd_customer_remove(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.remove_customer(session, args.name)
    print(f"customer {args.name} removed")
    return 0


def cmd_domain_add(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        row = admin.add_domain(session, args.domain, args.customer, SystemClock().now())
        domain = row.domain
    print(f"domain {domain} added to {args.customer}")
    return 0


def cmd_domain_list(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        query = select(ScannedDomain).join(Customer).order_by(ScannedDomain.domain)
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [(d.domain, d.customer.name) for d in session.scalars(query)]
    _table(("domain", "customer"), rows)
    return 0


def cmd_domain_remove(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.remove_domain(session, args.domain)
    print(f"domain {args.domain} removed")
    return 0


def cmd_server_add(args: argparse.Namespace, config: Config) -> int:
    # Locked: on SQLite, no other registration slips in between the overlap
    # check and the insert (PostgreSQL's exclusion constraint refuses one).
    with _transaction(config, locked=True) as session:
        server = admin.add_server(
            session,
            args.network,
            args.customer,
            config.registration,
            SystemClock().now(),
            allow_non_global=args.allow_non_global,
        )
        network = server.network
    print(f"SMTP server {network} added to {args.customer}")
    return 0


def cmd_server_list(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        query = (
            select(SmtpServer)
            .join(Customer)
            .order_by(SmtpServer.family, SmtpServer.first_address, SmtpServer.prefix_len)
        )
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [(s.network, s.customer.name, s.state) for s in session.scalars(query)]
    _table(("server", "customer", "state"), rows)
    return 0


def cmd_server_show(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        server = admin.find_server(session, args.address)
        limits = config.plans.limits(server.customer.plan)
        fields = [
            ("server", server.network),
            ("customer", server.customer.name),
            ("plan", server.customer.plan),
            ("state", server.state),
            ("state since", _when(server.state_changed_at)),
            ("last incident", _when(server.last_incident_at) if server.last_incident_at else "-"),
            ("registered", server.created_at.isoformat(timespec="seconds")),
            ("max message size", limits.max_message_size),
            (
                "recipients known/unknown",
                f"{limits.max_recipients_known}/{limits.max_recipients_unknown}",
            ),
        ]
        standing = Standing(
            ServerState(server.state), server.state_changed_at, server.last_incident_at
        )
        if (due := standing.recovery_due(Rules.from_config(config.reputation))) is not None:
            fields.insert(6, ("veilig again at", _when(due)))
    for key, value in fields:
        print(f"{key + ':':<26} {value}")
    return 0


def cmd_server_remove(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.remove_server(session, args.network)
    print(f"SMTP server {args.network} removed")
    return 0


def _operator_command(action: OperatorActionKind) -> Handler:
    target = ServerState.VEILIG if action is OperatorActionKind.RELEASE else ServerState.ONVEILIG

    def handler(args: argparse.Namespace, config: Config) -> int:
        with _reputation(config) as (store, reputation):
            sender = _sender(store, args.identity)
            changes = reputation.operator(sender.kind, sender.id, action, args.by, args.reason)
        for change in changes:
            print(
                f"{_describe(sender)}: {change.old} → {change.new} at {_when(change.at)} "
                f"by {change.actor}: {change.reason}"
            )
        if all(change.actor == SYSTEM for change in changes):
            print(f"{_describe(sender)} is already {target}: nothing to {action}")
        return 0

    return handler


def cmd_server_history(args: argparse.Namespace, config: Config) -> int:
    # It writes (a recovery that fell due is recorded), but only to a
    # database that is there: an empty new one has no history to show.
    with _reputation(config, Access.EXISTING) as (store, reputation):
        sender = _sender(store, args.identity)
        # Looking is observing: a recovery that fell due is recorded (at its due time).
        reputation.observe(sender.kind, sender.id)
        standing = reputation.standing(sender.kind, sender.id)
        changes: list[Transition] = reputation.history(sender.kind, sender.id)
    print(f"{_describe(sender)}: {standing.state} since {_when(standing.changed_at)}")
    rows = [(_when(c.at), f"{c.old} → {c.new}", c.actor, c.reason) for c in changes]
    if rows:
        _table(("at", "change", "actor", "reason"), rows)
    else:
        print("no state changes recorded")
    return 0


def cmd_sasl_add(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.add_sasl(session, args.login, args.customer, SystemClock().now())
    print(f"SASL login {args.login} added to {args.customer}")
    return 0


def cmd_sasl_list(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        query = select(SaslAccount).join(Customer).order_by(SaslAccount.login)
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [(a.login, a.customer.name, a.state) for a in session.scalars(query)]
    _table(("login", "customer", "state"), rows)
    return 0


def cmd_sasl_remove(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config) as session:
        admin.remove_sasl(session, args.login)
    print(f"SASL login {args.login} removed")
    return 0


def cmd_inbound_import(args: argparse.Namespace, config: Config) -> int:
    try:
        with Path(args.file).open(newline="", encoding="utf-8") as handle:
            rows = admin.parse_inbound_csv(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    with _transaction(config) as session:
        count = admin.import_inbound(session, rows)
    print(f"imported inbound volume for {count} domain-month(s) from {args.file}")
    return 0


def cmd_spf_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.spf.advisor import advise, render_json, render_text
    from osfmilter.spf.checker import SpfChecker, resolver_for

    settings = config.spf
    if not settings.outbound_ips:
        raise UsageError("[spf] outbound_ips is empty: there is no relay address to check")
    domain = admin.normalize_domain(args.domain)
    resolver = resolver_for(settings.nameservers, settings.timeout)
    checker = SpfChecker(settings.outbound_ips, resolver, settings.timeout)
    advice = advise(domain, checker, resolver, settings.include, settings.outbound_ips)
    print(render_json(advice) if args.json else render_text(advice))
    return 0 if advice.passes else 1


def cmd_report_volume(args: argparse.Namespace, config: Config) -> int:
    month = reports.parse_month(args.month or SystemClock().now().strftime("%Y-%m"))
    with _transaction(config, Access.READ_ONLY) as session:
        rows = reports.volume(session, month, config.plans)
    records = [_record(r, use_percent=r.use_percent) for r in rows]
    output = _output(args)
    if output == "json":
        _print_json({"month": month, "rows": records})
    elif output == "csv":
        unlimited = {"allowance": "unlimited"}
        _print_csv(
            [
                {"month": month, **r, **(unlimited if r["allowance"] is None else {})}
                for r in records
            ],
            ["month", *(f.name for f in dataclasses.fields(reports.VolumeRow)), "use_percent"],
        )
    else:
        _table(
            ("customer", "plan", "domain", "messages", "bytes", "inbound", "allowance", "use"),
            [
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
            ],
        )
    return 0


def cmd_report_bill(args: argparse.Namespace, config: Config) -> int:
    month = reports.parse_month(args.month or SystemClock().now().strftime("%Y-%m"))
    with _transaction(config, Access.READ_ONLY) as session:
        rows = reports.bill(session, month, config.billing)
    records = [_record(r) for r in rows]
    output = _output(args)
    if output == "json":
        _print_json({"month": month, "currency": config.billing.currency, "rows": records})
    elif output == "csv":
        _print_csv(
            [{"month": month, **r} for r in records],
            ["month", *(f.name for f in dataclasses.fields(reports.BillRow))],
        )
    else:
        currency = config.billing.currency
        _table(
            ("customer", "plan", "messages", "bytes", "extra GB", "amount"),
            [
                (r.customer, r.plan, r.messages, r.bytes, r.extra_gb, f"{r.amount} {currency}")
                for r in rows
            ],
        )
        print(f"total {month}: {sum(r.amount for r in rows)} {currency}")
    return 0


def cmd_report_refused(args: argparse.Namespace, config: Config) -> int:
    since = _since(args.since, SystemClock().now())
    with _transaction(config, Access.READ_ONLY) as session:
        rows = reports.refusals(session, since, args.limit)
    records = [_record(r) for r in rows]
    output = _output(args)
    if output == "json":
        _print_json({"since": _when(since), "rows": records})
    elif output == "csv":
        _print_csv(records, [f.name for f in dataclasses.fields(reports.RefusalRow)])
    else:
        print(f"refusals since {_when(since)}")
        _table(
            ("identity", "customer", "reason", "count", "last seen"),
            [(r.identity, r.customer or "-", r.reason, r.count, _when(r.last_at)) for r in rows],
        )
    return 0


def cmd_report_states(args: argparse.Namespace, config: Config) -> int:
    with _transaction(config, Access.READ_ONLY) as session:
        report = reports.states(session, Rules.from_config(config.reputation))
    records = [_record(r) for r in report.identities]
    output = _output(args)
    if output == "json":
        _print_json({"counts": report.counts, "identities": records})
    elif output == "csv":
        _print_csv(records, [f.name for f in dataclasses.fields(reports.StateRow)])
    else:
        _table(("state", "identities"), list(report.counts.items()))
        if report.identities:
            print()
            _table(
                ("identity", "customer", "state", "since", "veilig again at", "by", "last reason"),
                [
                    (
                        r.identity,
                        r.customer,
                        r.state,
                        _when(r.since),
                        _when(r.veilig_again_at) if r.veilig_again_at else "-",
                        r.last_actor or "-",
                        r.last_reason or "-",
                    )
                    for r in report.identities
                ],
            )
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


# Parser --------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osfmilter", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"osfmilter {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="TOML config file (default: $OSFMILTER_CONFIG, else none)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        sub: argparse._SubParsersAction[_Parser], name: str, handler: Handler, help_: str
    ) -> _Parser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help_: str) -> argparse._SubParsersAction[_Parser]:
        p = commands.add_parser(name, help=help_, description=help_)
        return p.add_subparsers(dest=f"{name}_command", required=True, parser_class=_Parser)

    command(commands, "run", cmd_run, "run the milter")
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

    db = group("db", "database schema")
    p = command(db, "upgrade", cmd_db_upgrade, "create or upgrade the schema")
    p.add_argument("revision", nargs="?", default="head")
    command(db, "status", cmd_db_status, "show the schema revision")
    p = command(
        db,
        "purge",
        cmd_db_purge,
        "delete old events and long-expired rate slots (monthly totals stay)",
    )
    p.add_argument(
        "--older-than",
        required=True,
        metavar="Nd|Nh",
        help="delete events older than this, e.g. 400d",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what would go")
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=retention.BATCH_SIZE,
        metavar="N",
        help=f"rows per transaction (default {retention.BATCH_SIZE})",
    )

    plans = [str(p) for p in PlanName]
    customer = group("customer", "customers and their plans")
    p = command(customer, "add", cmd_customer_add, "add a customer")
    p.add_argument("name")
    p.add_argument("--plan", choices=plans, default=PlanName.FREE)
    p = command(customer, "plan", cmd_customer_plan, "change a customer's plan")
    p.add_argument("name")
    p.add_argument("plan", choices=plans)
    command(customer, "list", cmd_customer_list, "list customers")
    p = command(customer, "remove", cmd_customer_remove, "remove a customer with nothing left")
    p.add_argument("name")

    domain = group("domain", "scanned domains (they make a sender known)")
    p = command(domain, "add", cmd_domain_add, "add a scanned domain")
    p.add_argument("domain")
    p.add_argument("--customer", required=True)
    p = command(domain, "list", cmd_domain_list, "list scanned domains")
    p.add_argument("--customer")
    p = command(domain, "remove", cmd_domain_remove, "remove a scanned domain")
    p.add_argument("domain")

    server = group("server", "registered SMTP servers; the state of servers and SASL logins")
    p = command(server, "add", cmd_server_add, "register an SMTP server (address or CIDR)")
    p.add_argument("network", metavar="IP_OR_CIDR")
    p.add_argument("--customer", required=True)
    p.add_argument(
        "--allow-non-global",
        action="store_true",
        help="register a private, loopback, NAT64 ... network on purpose: "
        "every host behind it relays as this customer",
    )
    p = command(server, "list", cmd_server_list, "list registered SMTP servers")
    p.add_argument("--customer")
    p = command(server, "show", cmd_server_show, "show the registration an address falls under")
    p.add_argument("address", metavar="IP")
    p = command(server, "remove", cmd_server_remove, "remove a registration")
    p.add_argument("network", metavar="IP_OR_CIDR")
    for action, help_ in (
        (OperatorActionKind.RELEASE, "make a verdacht or onveilig server or SASL login veilig"),
        (OperatorActionKind.BLOCK, "make a server or SASL login onveilig (all mail refused)"),
    ):
        p = command(server, action, _operator_command(action), help_)
        p.add_argument("identity", metavar="IP|LOGIN")
        p.add_argument("--by", required=True, metavar="NAME", help="the operator, for the history")
        p.add_argument("--reason", required=True, metavar="TEXT", help="why, for the history")
    p = command(
        server, "history", cmd_server_history, "the state changes of a server or SASL login"
    )
    p.add_argument("identity", metavar="IP|LOGIN")

    sasl = group("sasl", "SASL accounts")
    p = command(sasl, "add", cmd_sasl_add, "register a SASL login")
    p.add_argument("login")
    p.add_argument("--customer", required=True)
    p = command(sasl, "list", cmd_sasl_list, "list SASL logins")
    p.add_argument("--customer")
    p = command(sasl, "remove", cmd_sasl_remove, "remove a SASL login")
    p.add_argument("login")

    spf = group("spf", "SPF of customers' domains")
    p = command(
        spf,
        "check",
        cmd_spf_check,
        "show a domain's SPF record, whether the relay passes, and what to publish",
    )
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    inbound = group("inbound", "inbound volume (it raises a free domain's allowance)")
    p = command(
        inbound,
        "import",
        cmd_inbound_import,
        "set inbound volume from a CSV file of domain,month,bytes rows",
    )
    p.add_argument("file", metavar="FILE.csv")

    def formats(p: _Parser) -> None:
        output = p.add_mutually_exclusive_group()
        output.add_argument("--csv", action="store_true", help="CSV with a header line")
        output.add_argument("--json", action="store_true", help="JSON")

    report = group("report", "volume, bill, refusals and states (also SQL views report_*)")
    p = command(
        report,
        "volume",
        cmd_report_volume,
        "outbound volume per customer and domain, with the allowance and its use",
    )
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month, UTC (default: this one)")
    formats(p)
    p = command(report, "bill", cmd_report_bill, "the price of each customer's month")
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month, UTC (default: this one)")
    formats(p)
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
        "--limit", type=_positive, default=20, metavar="N", help="at most N rows (default 20)"
    )
    formats(p)
    p = command(
        report, "states", cmd_report_states, "identities per state, and each one that is not veilig"
    )
    formats(p)
    return parser


if __name__ == "__main__":
    sys.exit(main())

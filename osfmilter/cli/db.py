"""``osfmilter db``: the schema, and retention."""

from __future__ import annotations

import argparse

from osfmilter.cli import common
from osfmilter.cli.common import Commands, command, group
from osfmilter.cli.output import when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.storage import outbox, retention
from osfmilter.storage.db import Access, safe_url, schema_status, upgrade


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    with common.engine(config) as engine:
        upgrade(engine, args.revision)
        current, _ = schema_status(engine)
    print(f"database {safe_url(config.database_url)} is at revision {current}")
    return 0


def cmd_db_status(args: argparse.Namespace, config: Config) -> int:
    with common.engine(config, Access.READ_ONLY) as engine:
        current, head = schema_status(engine)
    state = "up to date" if current == head else f"needs upgrade to {head}"
    print(f"database {safe_url(config.database_url)}: revision {current or 'none'} ({state})")
    return 0 if current == head else 1


def cmd_db_purge(args: argparse.Namespace, config: Config) -> int:
    now = SystemClock().now()
    events_before = common.ago(args.older_than, now)
    slots_before = retention.slot_cutoff(now, config.rates.window, config.rates.reservation_ttl)
    with common.store(config, Access.READ_ONLY if args.dry_run else Access.EXISTING) as store:
        if args.dry_run:
            result = retention.count(store.engine, events_before, slots_before)
            notices = outbox.count_finished(store.engine, events_before)
        else:
            result = retention.purge(store.engine, events_before, slots_before, args.batch_size)
            notices = outbox.purge_finished(store.engine, events_before, args.batch_size)
    verb = "would remove" if args.dry_run else "removed"
    batches = "" if args.dry_run else f" in {result.batches} batch(es)"
    print(
        f"{verb} {result.events} event(s) older than {when(events_before)} "
        f"and {result.rate_slots} expired rate slot(s){batches}"
    )
    if notices:  # said only when there are some: most relays notify little
        print(f"{verb} {notices} delivered or given-up notification(s) older than that")
    return 0


def register(commands: Commands) -> None:
    db = group(commands, "db", "database schema")
    p = command(db, "upgrade", cmd_db_upgrade, "create or upgrade the schema")
    p.add_argument("revision", nargs="?", default="head")
    command(db, "status", cmd_db_status, "show the schema revision")
    p = command(
        db,
        "purge",
        cmd_db_purge,
        "delete old events, long-expired rate slots and finished notifications "
        "(monthly totals stay)",
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
        type=common.positive,
        default=retention.BATCH_SIZE,
        metavar="N",
        help=f"rows per transaction (default {retention.BATCH_SIZE})",
    )

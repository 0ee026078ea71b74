"""``osfmilter server release|block|history``: an identity's state, as operators change it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from osfmilter.cli import common
from osfmilter.cli.common import Commands, Handler, command, group_of
from osfmilter.cli.output import table, when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.model import IdentityKind, ServerState
from osfmilter.notify.notices import NoticePolicy
from osfmilter.reputation import SYSTEM, OperatorActionKind, Rules, Transition
from osfmilter.storage import admin
from osfmilter.storage.db import Access
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.store import SqlStore


@contextmanager
def _reputation(
    config: Config, access: Access = Access.CREATE
) -> Iterator[tuple[SqlStore, ReputationStore]]:
    """The stores behind the state commands, against a schema that is up to date."""
    with common.store(config, access) as store:
        rules = Rules.from_config(config.reputation)
        notices = NoticePolicy(config.notify.disabled)
        yield store, ReputationStore(store.engine, SystemClock(), rules, notices)


def _sender(store: SqlStore, text: str) -> admin.Sender:
    with store.session() as session:
        return admin.find_sender(session, text)


def _describe(sender: admin.Sender) -> str:
    return f"{'SMTP server' if sender.kind is IdentityKind.SERVER else 'SASL login'} {sender.name}"


def _operator_command(action: OperatorActionKind) -> Handler:
    target = ServerState.VEILIG if action is OperatorActionKind.RELEASE else ServerState.ONVEILIG

    def handler(args: argparse.Namespace, config: Config) -> int:
        with _reputation(config, Access.EXISTING) as (store, reputation):
            sender = _sender(store, args.identity)
            changes = reputation.operator(sender.kind, sender.id, action, args.by, args.reason)
        for change in changes:
            print(
                f"{_describe(sender)}: {change.old} → {change.new} at {when(change.at)} "
                f"by {change.actor}: {change.reason}"
            )
        if all(change.actor == SYSTEM for change in changes):
            print(f"{_describe(sender)} is already {target}: nothing to {action}")
        return 0

    return handler


def cmd_server_history(args: argparse.Namespace, config: Config) -> int:
    # Looking is observing: a recovery that fell due is recorded (at its due
    # time), but only in a database that is there: a new one has no history.
    with _reputation(config, Access.EXISTING) as (store, reputation):
        sender = _sender(store, args.identity)
        reputation.observe(sender.kind, sender.id)
        standing = reputation.standing(sender.kind, sender.id)
        changes: list[Transition] = reputation.history(sender.kind, sender.id)
    print(f"{_describe(sender)}: {standing.state} since {when(standing.changed_at)}")
    rows = [(when(c.at), f"{c.old} → {c.new}", c.actor, c.reason) for c in changes]
    if rows:
        table(("at", "change", "actor", "reason"), rows)
    else:
        print("no state changes recorded")
    return 0


def register(commands: Commands) -> None:
    """Adds to the ``server`` group (made by :mod:`osfmilter.cli.registry`)."""
    server = group_of(commands, "server")
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

"""``osfmilter customer contact``, ``webhook`` and ``notify``: where notifications go, and
the process that sends them."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from osfmilter.addresses import parse_host_port
from osfmilter.cli import common
from osfmilter.cli.common import Commands, command, group, group_of, positive
from osfmilter.cli.output import table, when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.errors import ConfigError
from osfmilter.notify.sender import Sender
from osfmilter.storage import contacts
from osfmilter.storage.db import Access, require_schema

log = logging.getLogger("osfmilter.notify")


def cmd_contact_add(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        address = contacts.add_contact(session, args.name, args.email, SystemClock().now())
    print(f"{address} added as a contact of {args.name}")
    return 0


def cmd_contact_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        address = contacts.remove_contact(session, args.name, args.email)
    print(f"{address} is no longer a contact of {args.name}")
    return 0


def cmd_contact_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        rows = [(address,) for address in contacts.contacts(session, args.name)]
    table(("contact",), rows)
    return 0


def cmd_webhook_add(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        webhook, secret = contacts.add_webhook(
            session,
            args.customer,
            args.url,
            SystemClock().now(),
            allow_http=args.allow_http,
            public_only=False,
        )
        webhook_id, url = webhook.id, webhook.url
    print(f"webhook {webhook_id} added for {args.customer}: {url}")
    print(f"secret: {secret}")
    print("The secret is shown this once: keep it where the receiver checks signatures.")
    return 0


def cmd_webhook_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        rows = [
            (webhook.id, customer, webhook.url, when(webhook.created_at))
            for webhook, customer in contacts.webhooks(session, args.customer)
        ]
    table(("id", "customer", "url", "added"), rows)
    return 0


def cmd_webhook_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        webhook = contacts.remove_webhook(session, args.id)
        url = webhook.url
    print(f"webhook {args.id} removed ({url})")
    return 0


def cmd_notify_run(args: argparse.Namespace, config: Config) -> int:
    if not config.notify.sender:
        raise ConfigError("[notify] sender is not set: the From: address of the e-mails")
    with common.engine(config, Access.EXISTING) as engine:
        require_schema(engine, config.database_url)
        sender = Sender(engine, config, SystemClock())
        if args.once:
            sent = retried = failed = 0
            while True:
                result = sender.run_once()
                sent, retried, failed = (
                    sent + result.sent,
                    retried + result.retried,
                    failed + result.failed,
                )
                if result.claimed == 0:
                    break
            print(f"notifications: {sent} sent, {retried} to retry, {failed} given up")
            return 0
        if config.notify.metrics_listen:
            host, port = parse_host_port(config.notify.metrics_listen)
            start_http_server(port, host, registry=sender.metrics.registry)
        stop = threading.Event()

        def stopping(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        log.info("sending notifications through %s and webhooks", config.notify.smtp)
        sender.run(stop)
    return 0


def register(commands: Commands) -> None:
    customer = group_of(commands, "customer")
    contact = group(customer, "contact", "the addresses a customer's notifications are mailed to")
    for name, handler, help_ in (
        ("add", cmd_contact_add, "mail a customer's notifications to this address too"),
        ("remove", cmd_contact_remove, "stop mailing a customer's notifications to an address"),
    ):
        p = command(contact, name, handler, help_)
        p.add_argument("name", metavar="NAME")
        p.add_argument("email", metavar="EMAIL")
    p = command(contact, "list", cmd_contact_list, "list a customer's contacts")
    p.add_argument("name", metavar="NAME")

    webhook = group(commands, "webhook", "URLs a customer's notifications are posted to, signed")
    p = command(
        webhook, "add", cmd_webhook_add, "add a webhook; prints the secret that signs it, once"
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--customer", required=True, metavar="NAME")
    p.add_argument(
        "--allow-http",
        action="store_true",
        help="accept a plain http:// URL that is not on loopback: notifications go unencrypted",
    )
    p = command(webhook, "list", cmd_webhook_list, "list webhooks (never their secrets)")
    p.add_argument("--customer", metavar="NAME")
    p = command(webhook, "remove", cmd_webhook_remove, "remove a webhook")
    p.add_argument("id", type=positive, metavar="ID")

    notify = group(commands, "notify", "the process that delivers customers' notifications")
    p = command(
        notify, "run", cmd_notify_run, "deliver notifications: e-mail and webhooks, with retries"
    )
    p.add_argument(
        "--once", action="store_true", help="deliver what is due now, then exit (cron, tests)"
    )

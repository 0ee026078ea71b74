"""``osfmilter customer``, ``server`` and ``sasl``: who may relay, and as whom.

The domain commands are in :mod:`osfmilter.cli.domains`, the state
commands of servers and SASL logins (release, block, history) in
:mod:`osfmilter.cli.reputation`.
"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from osfmilter.cli import common, domains
from osfmilter.cli.common import Commands, command, group
from osfmilter.cli.output import table, when
from osfmilter.cli.secrets import set_password
from osfmilter.clock import SystemClock
from osfmilter.config import Config, PlanName
from osfmilter.dovecot import sql_connect
from osfmilter.model import ServerState
from osfmilter.reputation import Rules, Standing
from osfmilter.storage import admin
from osfmilter.storage.db import Access
from osfmilter.storage.schema import Customer, SaslAccount, SmtpServer


def cmd_customer_add(args: argparse.Namespace, config: Config) -> int:
    with common.session(config) as session:
        admin.add_customer(session, args.name, args.plan, SystemClock().now())
    print(f"customer {args.name} added (plan {args.plan})")
    return 0


def cmd_customer_plan(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        admin.set_plan(session, args.name, args.plan)
    print(f"customer {args.name} is now on plan {args.plan}")
    return 0


def cmd_customer_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        customers = session.scalars(select(Customer).order_by(Customer.name)).all()
        rows = [
            (c.name, c.plan, len(c.domains), len(c.servers), len(c.sasl_accounts))
            for c in customers
        ]
    table(("customer", "plan", "domains", "servers", "sasl"), rows)
    return 0


def cmd_customer_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        admin.remove_customer(session, args.name)
    print(f"customer {args.name} removed")
    return 0


def cmd_server_add(args: argparse.Namespace, config: Config) -> int:
    # Locked: no other registration slips in between the overlap check and
    # the insert (SQLite: BEGIN IMMEDIATE; PostgreSQL: admin's advisory lock).
    with common.session(config, locked=True) as session:
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
    with common.session(config, Access.READ_ONLY) as session:
        query = (
            select(SmtpServer)
            .join(Customer)
            .order_by(SmtpServer.family, SmtpServer.first_address, SmtpServer.prefix_len)
        )
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [(s.network, s.customer.name, s.state) for s in session.scalars(query)]
    table(("server", "customer", "state"), rows)
    return 0


def cmd_server_show(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        server = admin.find_server(session, args.address)
        limits = config.plans.limits(server.customer.plan)
        fields = [
            ("server", server.network),
            ("customer", server.customer.name),
            ("plan", server.customer.plan),
            ("state", server.state),
            ("state since", when(server.state_changed_at)),
            ("last incident", when(server.last_incident_at) if server.last_incident_at else "-"),
            ("registered", when(server.created_at)),
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
            fields.insert(6, ("veilig again at", when(due)))
    for key, value in fields:
        print(f"{key + ':':<26} {value}")
    return 0


def cmd_server_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        admin.remove_server(session, args.network)
    print(f"SMTP server {args.network} removed")
    return 0


def cmd_sasl_add(args: argparse.Namespace, config: Config) -> int:
    return set_password(
        args,
        config,
        Access.CREATE,
        lambda session, hashed, now: (
            admin.add_sasl(session, args.login, args.customer, now, password_hash=hashed).login
        ),
        lambda login: f"SASL login {login} added to {args.customer}",
        # No other add slips in between the check for the login and the insert.
        locked=True,
    )


def cmd_sasl_passwd(args: argparse.Namespace, config: Config) -> int:
    return set_password(
        args,
        config,
        Access.EXISTING,
        lambda session, hashed, now: admin.set_sasl_password(session, args.login, hashed, now),
        lambda login: f"SASL login {login}: password replaced; the old one no longer works",
    )


def cmd_sasl_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        query = (
            select(
                SaslAccount.login,
                Customer.name,
                SaslAccount.state,
                SaslAccount.password_changed_at,
            )
            .join(Customer)
            .order_by(SaslAccount.login)
        )
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [
            (login, customer, state, when(changed) if changed else "none: cannot log in")
            for login, customer, state, changed in session.execute(query)
        ]
    table(("login", "customer", "state", "password set"), rows)
    return 0


def cmd_sasl_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        admin.remove_sasl(session, args.login)
    print(f"SASL login {args.login} removed")
    return 0


def cmd_sasl_dovecot(args: argparse.Namespace, config: Config) -> int:
    # The lines of /etc/dovecot/osfmilter-sql.conf.ext that depend on this
    # relay: derived from [database] url, so the two cannot drift apart.
    print("# /etc/dovecot/osfmilter-sql.conf.ext (contrib/dovecot): osfmilter's database")
    print(sql_connect(config.database_url).lines(), end="")
    return 0


def register(commands: Commands) -> None:
    plans = [str(p) for p in PlanName]
    customer = group(commands, "customer", "customers and their plans")
    p = command(customer, "add", cmd_customer_add, "add a customer")
    p.add_argument("name")
    p.add_argument("--plan", choices=plans, default=PlanName.FREE)
    p = command(customer, "plan", cmd_customer_plan, "change a customer's plan")
    p.add_argument("name")
    p.add_argument("plan", choices=plans)
    command(customer, "list", cmd_customer_list, "list customers")
    p = command(customer, "remove", cmd_customer_remove, "remove a customer with nothing left")
    p.add_argument("name")

    domains.register(commands)  # between customer and server in --help

    server = group(
        commands, "server", "registered SMTP servers; the state of servers and SASL logins"
    )
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

    sasl = group(commands, "sasl", "SASL accounts")
    stdin_help = "read the password from standard input instead of generating one"
    p = command(sasl, "add", cmd_sasl_add, "register a SASL login; prints its password once")
    p.add_argument("login")
    p.add_argument("--customer", required=True)
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    p = command(sasl, "passwd", cmd_sasl_passwd, "give a SASL login a new password")
    p.add_argument("login")
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    command(
        sasl,
        "dovecot-sql",
        cmd_sasl_dovecot,
        "print the driver and connect lines of Dovecot's passdb for this database",
    )
    p = command(sasl, "list", cmd_sasl_list, "list SASL logins")
    p.add_argument("--customer")
    p = command(sasl, "remove", cmd_sasl_remove, "remove a SASL login")
    p.add_argument("login")

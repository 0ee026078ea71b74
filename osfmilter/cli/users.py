"""``osfmilter user`` and ``token``: who logs in to the portal, and what the API accepts.

A password or a token is printed once, when it is made; only its hash is
stored (osfmilter.passwords, osfmilter.tokens), and no list shows either.
"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from osfmilter import tokens
from osfmilter.cli import common
from osfmilter.cli.common import Commands, Parser, command, group
from osfmilter.cli.output import table, when
from osfmilter.cli.secrets import set_password
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.storage import admin, users
from osfmilter.storage.db import Access
from osfmilter.storage.schema import ApiToken, Customer, User

OPERATOR = "(operator)"


def _owner(args: argparse.Namespace) -> str | None:
    """The customer's name, or None for --operator (argparse requires exactly one)."""
    return None if args.operator else str(args.customer)


def _owner_text(customer: str | None) -> str:
    return customer if customer is not None else OPERATOR


def cmd_user_add(args: argparse.Namespace, config: Config) -> int:
    owner = "operator" if args.operator else f"customer {args.customer}"
    return set_password(
        args,
        config,
        Access.CREATE,
        lambda session, hashed, now: (
            users.add_user(session, args.email, _owner(args), hashed, now).email
        ),
        lambda email: f"user {email} added ({owner})",
    )


def cmd_user_passwd(args: argparse.Namespace, config: Config) -> int:
    return set_password(
        args,
        config,
        Access.EXISTING,
        lambda session, hashed, now: (
            users.set_user_password(session, args.email, hashed, now).email
        ),
        lambda email: f"user {email}: password replaced; the old one no longer works",
    )


def cmd_user_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        # Columns by name: the password hash is never even read.
        query = (
            select(User.email, Customer.name, User.created_at, User.last_login_at)
            .outerjoin(Customer, User.customer_id == Customer.id)
            .order_by(User.email)
        )
        if args.customer:
            query = query.where(User.customer_id == admin.get_customer(session, args.customer).id)
        rows = [
            (email, _owner_text(customer), when(created), when(last) if last else "never")
            for email, customer, created, last in session.execute(query)
        ]
    table(("user", "customer", "created", "last login"), rows)
    return 0


def cmd_user_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        email = users.get_user(session, args.email).email
        users.remove_user(session, email)
    print(f"user {email} removed")
    return 0


def cmd_token_create(args: argparse.Namespace, config: Config) -> int:
    made = tokens.generate()
    with common.session(config) as session:
        row = users.add_token(
            session,
            made.prefix,
            made.hash,
            _owner(args),
            SystemClock().now(),
            name=args.name,
            created_by=args.by,
        )
        token_id = row.id
    owner = "the operator" if args.operator else f"customer {args.customer}"
    print(f"API token {token_id} ({tokens.MARKER}{made.prefix}) created for {owner}")
    # Only here, on stdout, once: never logged, never stored but as a hash.
    print(f"token: {made.token}")
    print("Pass it on now: only its hash is stored, it cannot be shown again.")
    return 0


def cmd_token_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        query = (
            select(
                ApiToken.id,
                ApiToken.prefix,
                Customer.name,
                ApiToken.name,
                ApiToken.created_at,
                ApiToken.created_by,
                ApiToken.last_used_at,
                ApiToken.revoked_at,
            )
            .outerjoin(Customer, ApiToken.customer_id == Customer.id)
            .order_by(ApiToken.id)
        )
        if args.customer:
            customer_id = admin.get_customer(session, args.customer).id
            query = query.where(ApiToken.customer_id == customer_id)
        rows = [
            (
                token_id,
                f"{tokens.MARKER}{prefix}",
                _owner_text(customer),
                name or "-",
                when(created),
                by,
                when(used) if used else "never",
                when(revoked) if revoked else "-",
            )
            for token_id, prefix, customer, name, created, by, used, revoked in session.execute(
                query
            )
        ]
    table(
        ("id", "prefix", "customer", "name", "created", "by", "last used", "revoked"),
        rows,
    )
    return 0


def cmd_token_revoke(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        row = users.revoke_token(session, args.token, SystemClock().now())
        token_id, prefix = row.id, row.prefix
    print(f"API token {token_id} ({tokens.MARKER}{prefix}) revoked; it no longer authenticates")
    return 0


def _owner_arguments(parser: Parser) -> None:
    owner = parser.add_mutually_exclusive_group(required=True)
    owner.add_argument("--customer", metavar="NAME", help="belongs to this customer")
    owner.add_argument("--operator", action="store_true", help="the operator's: every customer")


def register(commands: Commands) -> None:
    user = group(commands, "user", "users of the portal, customers' and operators'")
    stdin_help = "read the password from standard input instead of generating one"
    p = command(user, "add", cmd_user_add, "add a portal user; prints its password once")
    p.add_argument("email", metavar="EMAIL")
    _owner_arguments(p)
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    p = command(user, "passwd", cmd_user_passwd, "give a portal user a new password")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--password-stdin", action="store_true", help=stdin_help)
    p = command(user, "list", cmd_user_list, "list portal users")
    p.add_argument("--customer", metavar="NAME")
    p = command(user, "remove", cmd_user_remove, "remove a portal user")
    p.add_argument("email", metavar="EMAIL")

    token = group(commands, "token", "API tokens")
    p = command(token, "create", cmd_token_create, "create an API token; prints it once")
    _owner_arguments(p)
    p.add_argument("--name", default="", metavar="TEXT", help="what the token is for")
    p.add_argument(
        "--by", default="cli", metavar="NAME", help="who made it, for the record (default: cli)"
    )
    p = command(token, "list", cmd_token_list, "list API tokens (never the tokens themselves)")
    p.add_argument("--customer", metavar="NAME")
    p = command(token, "revoke", cmd_token_revoke, "revoke an API token at once")
    p.add_argument("token", metavar="ID_OR_PREFIX")

"""Test databases: a PostgreSQL database of one's own, an empty schema at the current revision."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, text

from osfmilter.storage import admin
from osfmilter.storage.db import upgrade
from osfmilter.storage.domains import add_domain
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION


def reset_database(engine: Engine) -> None:
    """An empty schema at the current revision."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database, dropped at the end however the caller ends.

    ``admin_url`` only needs the right to create databases.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


def register_customer(
    engine: Engine,
    customer: str,
    domain: str,
    servers: Sequence[str] = (),
    logins: Sequence[str] = (),
) -> None:
    """A free-plan customer with its scanned domain, servers and SASL logins, as of now.

    The servers may be test networks that are not globally routable.
    """
    now = datetime.now(UTC)
    with SqlStore(engine).session() as session:
        admin.add_customer(session, customer, "free", now)
        add_domain(session, domain, customer, now)
        for server in servers:
            admin.add_server(session, server, customer, TEST_REGISTRATION, now)
        for login in logins:
            admin.add_sasl(session, login, customer, now)

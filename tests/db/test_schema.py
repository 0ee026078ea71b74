"""The migration builds exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from osfmilter.storage.db import schema_status
from osfmilter.storage.schema import Base


def test_upgrade_reaches_head(engine: Engine) -> None:
    current, head = schema_status(engine)
    assert current == head == "0009"


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_tables_operators_query_exist(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {
        "customers",
        "scanned_domains",
        "smtp_servers",
        "sasl_accounts",
        "events",
        "state_history",
    } <= tables
    columns = {c["name"] for c in inspect(engine).get_columns("events")}
    assert {
        "at",
        "queue_id",
        "identity",
        "client_ip",
        "envelope_sender",
        "header_from_domain",
        "rcpt_count",
        "size",
        "action",
        "reason",
        "spam_score",
        "virus_name",
        "spf_result",
    } <= columns

"""The migration builds exactly the models' schema, on SQLite and PostgreSQL.

And the history is sound (pytest-alembic's default checks, written with
alembic's own API: pytest-alembic 0.13.1's collector fails under pytest 9):
one head, and every migration upgrades one step at a time from an empty
database and downgrades again down to it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, make_url, text

from osfmilter.config import Config
from osfmilter.storage.db import make_engine, schema_status
from osfmilter.storage.schema import Base

MIGRATIONS = str(importlib.resources.files("osfmilter.migrations"))


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    """The migrations osfmilter ships, run on ``engine`` (as migrations/env.py takes it)."""
    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@pytest.fixture
def empty(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty database on each backend (db_url's is migrated already)."""
    if make_url(db_url).get_backend_name() == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/empty.sqlite3", Config().database.timeout)
    else:
        engine = make_engine(db_url, Config().database.timeout)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    yield engine
    engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_the_history_has_one_head() -> None:
    """Two heads (two branches that each added a migration) would fail every upgrade."""
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


def test_every_migration_upgrades_and_downgrades_one_step_at_a_time(empty: Engine) -> None:
    """Up from nothing one revision at a time, down again to nothing, and up once more."""
    config = alembic_config(empty)
    script = ScriptDirectory.from_config(config)
    revisions = [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]
    for revision in revisions:
        command.upgrade(config, revision)
        assert current_revision(empty) == revision
    for below in [*reversed(revisions[:-1]), None]:
        command.downgrade(config, "-1")
        assert current_revision(empty) == below
    assert set(inspect(empty).get_table_names()) <= {"alembic_version"}
    assert inspect(empty).get_view_names() == []
    command.upgrade(config, "heads")
    with empty.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_reaches_head(engine: Engine) -> None:
    current, head = schema_status(engine)
    assert current == head == "0015"


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

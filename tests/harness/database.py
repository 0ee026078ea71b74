"""Test databases: an empty schema at the current revision."""

from __future__ import annotations

from sqlalchemy import Engine, text

from osfmilter.storage.db import upgrade


def reset_database(engine: Engine) -> None:
    """An empty schema at the current revision."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)

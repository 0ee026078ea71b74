"""Alembic environment: the engine comes from osfmilter, never from alembic.ini.

``osfmilter db upgrade`` passes its engine in ``config.attributes``; the plain
``alembic`` command (for developers) reads osfmilter's own configuration
($OSFMILTER_CONFIG or the defaults).
"""

from alembic import context
from sqlalchemy import Engine

from osfmilter.config import load_config
from osfmilter.storage.db import make_engine
from osfmilter.storage.schema import Base


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    if engine is None:
        config = load_config()
        engine = make_engine(config.database_url, config.database.timeout)
    return engine


def run_migrations() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()

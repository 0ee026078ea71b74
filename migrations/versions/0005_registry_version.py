"""A version number of the registry, raised by the database on every change to it.

Revision ID: 0005
Revises: 0004

The milter caches who a client is (server or SASL account, customer, plan,
state, scanned domains) and asks only this number per message. Triggers
raise it on any change to the four tables a cached identity is built from,
whoever makes the change: the osfmilter CLI, the reputation rules, or an
operator's own SQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REGISTRY_TABLES = ("customers", "scanned_domains", "smtp_servers", "sasl_accounts")
BUMP = "UPDATE registry_version SET version = version + 1"


def upgrade() -> None:
    op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_registry_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_version")),
    )
    op.execute("INSERT INTO registry_version (id, version) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION osfmilter_bump_registry_version() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN {BUMP}; RETURN NULL; END $$
        """)
        for table in REGISTRY_TABLES:
            op.execute(f"""
                CREATE TRIGGER {table}_registry_version
                AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION osfmilter_bump_registry_version()
            """)
    else:
        for table in REGISTRY_TABLES:
            for operation in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"""
                    CREATE TRIGGER {table}_registry_version_{operation.lower()}
                    AFTER {operation} ON {table} BEGIN {BUMP}; END
                """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in REGISTRY_TABLES:
            op.execute(f"DROP TRIGGER {table}_registry_version ON {table}")
        op.execute("DROP FUNCTION osfmilter_bump_registry_version()")
    else:
        for table in REGISTRY_TABLES:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_registry_version_{operation}")
    op.drop_table("registry_version")

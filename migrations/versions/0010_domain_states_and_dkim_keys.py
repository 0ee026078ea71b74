"""Domains are verified or pending; DKIM keys per domain.

Revision ID: 0010
Revises: 0009

Every domain already registered was added by an operator, so it is
``verified``. A pending domain's ``verification_token`` is what its
``_osfmilter`` TXT record must hold. ``dkim_keys`` holds each domain's
selectors and public keys (the private keys are files only the milter
reads); its changes raise ``registry_version`` like the other tables a
message is judged by.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE registry_version SET version = version + 1"


def upgrade() -> None:
    # Plain ADD COLUMNs, constraint included: SQLite need not copy the table,
    # which would drop its registry_version triggers (0005).
    op.execute(
        "ALTER TABLE scanned_domains ADD COLUMN state VARCHAR(10) DEFAULT 'verified' NOT NULL"
        " CONSTRAINT ck_scanned_domains_state CHECK (state IN ('verified', 'pending'))"
    )
    op.add_column("scanned_domains", sa.Column("verification_token", sa.String(64)))
    op.add_column("scanned_domains", sa.Column("verified_at", sa.DateTime(timezone=True)))
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(63), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key", sa.String(1000), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "algorithm IN ('rsa-sha256', 'ed25519-sha256')", name=op.f("ck_dkim_keys_algorithm")
        ),
        sa.CheckConstraint("state IN ('active', 'retiring')", name=op.f("ck_dkim_keys_state")),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["scanned_domains.id"],
            name=op.f("fk_dkim_keys_domain_id_scanned_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_keys")),
        sa.UniqueConstraint("domain_id", "selector", name=op.f("uq_dkim_keys_domain_id_selector")),
    )
    op.create_index(
        "ix_dkim_keys_one_active",
        "dkim_keys",
        ["domain_id"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE TRIGGER dkim_keys_registry_version
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dkim_keys
            FOR EACH STATEMENT EXECUTE FUNCTION osfmilter_bump_registry_version()
        """)
    else:
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER dkim_keys_registry_version_{operation.lower()}
                AFTER {operation} ON dkim_keys BEGIN {BUMP}; END
            """)


def downgrade() -> None:
    op.drop_index("ix_dkim_keys_one_active", table_name="dkim_keys")
    op.drop_table("dkim_keys")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("scanned_domains", "verified_at")
        op.drop_column("scanned_domains", "verification_token")
        op.execute("ALTER TABLE scanned_domains DROP COLUMN state")
    else:
        # SQLite drops a column only if no constraint names it; the CHECK on
        # state does, so the three go in one table copy, triggers restored.
        with op.batch_alter_table("scanned_domains") as batch:
            batch.drop_constraint(op.f("ck_scanned_domains_state"), type_="check")
            batch.drop_column("verified_at")
            batch.drop_column("verification_token")
            batch.drop_column("state")
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER scanned_domains_registry_version_{operation.lower()}
                AFTER {operation} ON scanned_domains BEGIN {BUMP}; END
            """)

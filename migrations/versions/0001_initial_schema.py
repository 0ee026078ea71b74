"""Initial schema: customers, domains, servers, SASL accounts, events, state.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("plan IN ('free', 'paid')", name=op.f("ck_customers_plan")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("name", name=op.f("uq_customers_name")),
    )
    op.create_table(
        "sasl_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('veilig', 'verdacht', 'onveilig')", name=op.f("ck_sasl_accounts_state")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_sasl_accounts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sasl_accounts")),
        sa.UniqueConstraint("login", name=op.f("uq_sasl_accounts_login")),
    )
    op.create_index(
        op.f("ix_sasl_accounts_customer_id"), "sasl_accounts", ["customer_id"], unique=False
    )
    op.create_table(
        "scanned_domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_scanned_domains_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanned_domains")),
        sa.UniqueConstraint("domain", name=op.f("uq_scanned_domains_domain")),
    )
    op.create_index(
        op.f("ix_scanned_domains_customer_id"), "scanned_domains", ["customer_id"], unique=False
    )
    op.create_table(
        "smtp_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(length=43), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("prefix_len", sa.SmallInteger(), nullable=False),
        sa.Column("first_address", sa.String(length=32), nullable=False),
        sa.Column("last_address", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('veilig', 'verdacht', 'onveilig')", name=op.f("ck_smtp_servers_state")
        ),
        sa.CheckConstraint("family IN (4, 6)", name=op.f("ck_smtp_servers_family")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_smtp_servers_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smtp_servers")),
        sa.UniqueConstraint("network", name=op.f("uq_smtp_servers_network")),
    )
    op.create_index(
        op.f("ix_smtp_servers_customer_id"), "smtp_servers", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_smtp_servers_lookup",
        "smtp_servers",
        ["family", "first_address", "last_address"],
        unique=False,
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("client_ip", sa.String(length=45), nullable=False),
        sa.Column("identity", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("smtp_server_id", sa.Integer(), nullable=True),
        sa.Column("sasl_account_id", sa.Integer(), nullable=True),
        sa.Column("envelope_sender", sa.String(length=320), nullable=False),
        sa.Column("header_from_domain", sa.String(length=253), nullable=False),
        sa.Column("rcpt_count", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("smtp_code", sa.SmallInteger(), nullable=True),
        sa.Column("enhanced_code", sa.String(length=9), nullable=False),
        sa.Column("spam_score", sa.Float(), nullable=True),
        sa.Column("spam_rules", sa.String(length=500), nullable=False),
        sa.Column("virus_name", sa.String(length=200), nullable=False),
        sa.Column("spf_result", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_events_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sasl_account_id"],
            ["sasl_accounts.id"],
            name=op.f("fk_events_sasl_account_id_sasl_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["smtp_server_id"],
            ["smtp_servers.id"],
            name=op.f("fk_events_smtp_server_id_smtp_servers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_at"), "events", ["at"], unique=False)
    op.create_index("ix_events_customer_at", "events", ["customer_id", "at"], unique=False)
    op.create_index(op.f("ix_events_sasl_account_id"), "events", ["sasl_account_id"], unique=False)
    op.create_index(op.f("ix_events_smtp_server_id"), "events", ["smtp_server_id"], unique=False)
    op.create_table(
        "state_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("smtp_server_id", sa.Integer(), nullable=True),
        sa.Column("sasl_account_id", sa.Integer(), nullable=True),
        sa.Column("old_state", sa.String(length=10), nullable=False),
        sa.Column("new_state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.CheckConstraint(
            "new_state IN ('veilig', 'verdacht', 'onveilig')",
            name=op.f("ck_state_history_new_state"),
        ),
        sa.CheckConstraint(
            "(smtp_server_id IS NULL) <> (sasl_account_id IS NULL)",
            name=op.f("ck_state_history_one_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["sasl_account_id"],
            ["sasl_accounts.id"],
            name=op.f("fk_state_history_sasl_account_id_sasl_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["smtp_server_id"],
            ["smtp_servers.id"],
            name=op.f("fk_state_history_smtp_server_id_smtp_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_history")),
    )
    op.create_index(op.f("ix_state_history_at"), "state_history", ["at"], unique=False)
    op.create_index(
        op.f("ix_state_history_sasl_account_id"), "state_history", ["sasl_account_id"], unique=False
    )
    op.create_index(
        op.f("ix_state_history_smtp_server_id"), "state_history", ["smtp_server_id"], unique=False
    )


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in (
        "state_history",
        "events",
        "smtp_servers",
        "scanned_domains",
        "sasl_accounts",
        "customers",
    ):
        op.drop_table(table)

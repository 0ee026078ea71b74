"""Customer contacts, webhooks, and the notification outbox with its deliveries.

Revision ID: 0015
Revises: 0014

``customer_contacts`` are the addresses a customer's notification e-mails
go to, ``webhooks`` the URLs they are posted to (with the secret that signs
them, kept because the sender needs it; ``public_only``, true unless the
operator added it, makes the sender refuse any address that is not public). ``notifications`` is the outbox:
one row per notification, written in the same transaction as its cause;
``notification_deliveries`` one row per channel (the e-mail, each webhook)
with its delivery state; ``notification_cursors`` how far the sender has
read ``events`` for the notices it derives from them. The milter writes the
outbox but reads none of these tables, so none raises ``registry_version``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["customer_id"],
        ["customers.id"],
        name=op.f(f"fk_{table}_customer_id_customers"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "customer_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _customer_fk("customer_contacts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_contacts")),
        sa.UniqueConstraint(
            "customer_id", "email", name=op.f("uq_customer_contacts_customer_id_email")
        ),
    )
    op.create_index(op.f("ix_customer_contacts_customer_id"), "customer_contacts", ["customer_id"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("public_only", sa.Boolean(), server_default=sa.true(), nullable=False),
        _customer_fk("webhooks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_customer_id"), "webhooks", ["customer_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(300), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("dedup_key", sa.String(400), nullable=True),
        _customer_fk("notifications"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_notifications_dedup_key")),
    )
    op.create_index(op.f("ix_notifications_at"), "notifications", ["at"])
    op.create_index(op.f("ix_notifications_customer_id"), "notifications", ["customer_id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'failed')",
            name=op.f("ck_notification_deliveries_state"),
        ),
        sa.CheckConstraint(
            "channel IN ('email', 'webhook')", name=op.f("ck_notification_deliveries_channel")
        ),
        sa.CheckConstraint(
            "(channel = 'webhook') = (webhook_id IS NOT NULL)",
            name=op.f("ck_notification_deliveries_webhook"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_deliveries_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_notification_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index(
        op.f("ix_notification_deliveries_notification_id"),
        "notification_deliveries",
        ["notification_id"],
    )
    op.create_index(
        op.f("ix_notification_deliveries_webhook_id"), "notification_deliveries", ["webhook_id"]
    )
    op.create_index(
        "ix_notification_deliveries_state_next_attempt_at",
        "notification_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_table(
        "notification_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notification_cursors")),
    )


def downgrade() -> None:
    op.drop_table("notification_cursors")
    op.drop_index(
        "ix_notification_deliveries_state_next_attempt_at", table_name="notification_deliveries"
    )
    op.drop_index(
        op.f("ix_notification_deliveries_webhook_id"), table_name="notification_deliveries"
    )
    op.drop_index(
        op.f("ix_notification_deliveries_notification_id"), table_name="notification_deliveries"
    )
    op.drop_table("notification_deliveries")
    op.drop_index(op.f("ix_notifications_customer_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_at"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index(op.f("ix_webhooks_customer_id"), table_name="webhooks")
    op.drop_table("webhooks")
    op.drop_index(op.f("ix_customer_contacts_customer_id"), table_name="customer_contacts")
    op.drop_table("customer_contacts")

"""Rate slots (5-minute windows) and monthly volume per domain.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=340), nullable=False),
        sa.Column("reservation", sa.String(length=32), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_slots")),
    )
    op.create_index("ix_rate_slots_key_at", "rate_slots", ["key", "at"], unique=False)
    op.create_index(op.f("ix_rate_slots_reservation"), "rate_slots", ["reservation"], unique=False)

    op.create_table(
        "monthly_volume",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "direction IN ('outbound', 'inbound')", name=op.f("ck_monthly_volume_direction")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_monthly_volume_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monthly_volume")),
        sa.UniqueConstraint(
            "month",
            "direction",
            "customer_id",
            "domain",
            name=op.f("uq_monthly_volume_month_direction_customer_id_domain"),
        ),
    )


def downgrade() -> None:
    op.drop_table("monthly_volume")
    op.drop_table("rate_slots")

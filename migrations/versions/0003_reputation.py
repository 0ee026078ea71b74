"""Reputation: the last incident per identity, and the evidence the rules count.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "smtp_servers", sa.Column("last_incident_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "sasl_accounts", sa.Column("last_incident_at", sa.DateTime(timezone=True), nullable=True)
    )

    op.create_table(
        "reputation_evidence",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("smtp_server_id", sa.Integer(), nullable=True),
        sa.Column("sasl_account_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.CheckConstraint(
            "(smtp_server_id IS NULL) <> (sasl_account_id IS NULL)",
            name=op.f("ck_reputation_evidence_one_identity"),
        ),
        sa.CheckConstraint(
            "kind IN ('detection', 'refusal')", name=op.f("ck_reputation_evidence_kind")
        ),
        sa.ForeignKeyConstraint(
            ["sasl_account_id"],
            ["sasl_accounts.id"],
            name=op.f("fk_reputation_evidence_sasl_account_id_sasl_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["smtp_server_id"],
            ["smtp_servers.id"],
            name=op.f("fk_reputation_evidence_smtp_server_id_smtp_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reputation_evidence")),
    )
    op.create_index(
        op.f("ix_reputation_evidence_sasl_account_id"),
        "reputation_evidence",
        ["sasl_account_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_reputation_evidence_smtp_server_id"),
        "reputation_evidence",
        ["smtp_server_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("reputation_evidence")
    op.drop_column("sasl_accounts", "last_incident_at")
    op.drop_column("smtp_servers", "last_incident_at")

"""SASL accounts have a password hash, which Dovecot checks.

Revision ID: 0011
Revises: 0010

``password_hash`` is a Dovecot password scheme string (``{ARGON2ID}...``,
osfmilter.passwords). Accounts registered before it have none and cannot
log in until ``osfmilter sasl passwd`` gives them one. Plain ADD COLUMNs:
SQLite need not copy the table, which would drop its registry_version
triggers (0005).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sasl_accounts", sa.Column("password_hash", sa.String(255), nullable=True))
    op.add_column(
        "sasl_accounts", sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # No constraint names these columns, so SQLite drops them without a table copy.
    op.drop_column("sasl_accounts", "password_changed_at")
    op.drop_column("sasl_accounts", "password_hash")

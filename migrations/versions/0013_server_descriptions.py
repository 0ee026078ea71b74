"""SMTP servers have a description, which the customer gives in the API or portal.

Revision ID: 0013
Revises: 0012

``description`` is free text of at most 200 characters ("the web shop"),
shown in lists, never matched. A plain ADD COLUMN: SQLite need not copy the
table, which would drop its registry_version (0005) and overlap (0008)
triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("smtp_servers", sa.Column("description", sa.String(200), nullable=True))


def downgrade() -> None:
    # No constraint or trigger names the column, so SQLite drops it without a table copy.
    op.drop_column("smtp_servers", "description")

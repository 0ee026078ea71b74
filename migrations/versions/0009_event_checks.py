"""Events name the policy steps that ran.

Revision ID: 0009
Revises: 0008

``checks`` lists the steps of osfmilter/policy/pipeline.py that ran for
the transaction, in order and comma-separated; after a refusal the last one
is the step that refused. Rows written before this revision hold "".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A plain ADD COLUMN with a constant default: SQLite need not copy the table
# (which the report views of 0004 read), PostgreSQL need not rewrite it.


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("checks", sa.String(length=300), nullable=False, server_default="")
    )


def downgrade() -> None:
    op.drop_column("events", "checks")

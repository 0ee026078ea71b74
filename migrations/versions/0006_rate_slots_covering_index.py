"""Rate slots: an index that answers the window's count by itself.

Revision ID: 0006
Revises: 0005

The admission counts a sender's slots and finds its oldest counting one.
With the index on (key, at), every slot also cost a visit to the table row
for ``pending``: on SQLite a quarter of the milter's CPU under a busy
sender (bench/RESULTS.md). On (key, pending, at) the count reads the index
alone, and the prune of expired slots is two range scans.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_rate_slots_key_pending_at", "rate_slots", ["key", "pending", "at"], unique=False
    )
    op.drop_index("ix_rate_slots_key_at", table_name="rate_slots")


def downgrade() -> None:
    op.create_index("ix_rate_slots_key_at", "rate_slots", ["key", "at"], unique=False)
    op.drop_index("ix_rate_slots_key_pending_at", table_name="rate_slots")

"""Rate slots: one row per reservation and key, so the accept counts with one upsert.

Revision ID: 0008
Revises: 0007

The accept turned a reservation's slots into counting ones with an UPDATE,
then inserted any slot the reservation had lost by expiring (a message that
took longer than the reservation's lifetime): two statements per bucket.
With (reservation, key) unique, one INSERT ... ON CONFLICT DO UPDATE does
both. The index also serves the release's lookup by reservation, which had
an index of its own.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_rate_slots_reservation_key', 'rate_slots', ['reservation', 'key'],
                    unique=True)
    op.drop_index('ix_rate_slots_reservation', table_name='rate_slots')


def downgrade() -> None:
    op.create_index('ix_rate_slots_reservation', 'rate_slots', ['reservation'], unique=False)
    op.drop_index('ix_rate_slots_reservation_key', table_name='rate_slots')

"""Rate windows: a count per key that the database keeps, so admission reads one row.

Revision ID: 0007
Revises: 0006

The admission counted a key's slots through the index: one index entry per
message in the window, so a sender's every message cost more the more it
had sent (bench/RESULTS.md: at 2,000 slots 0.7 ms of PostgreSQL per count).
Triggers on rate_slots now keep ``rate_counts.used`` equal to the number of
the key's rows, whoever inserts or deletes them: the milter, retention, or
an operator's own SQL. The admission still prunes expired slots before it
reads the count, so the count it reads is that of the live window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADD = (
    'INSERT INTO rate_counts ("key", used) VALUES (NEW."key", 1) '
    'ON CONFLICT ("key") DO UPDATE SET used = rate_counts.used + 1'
)
TAKE = 'UPDATE rate_counts SET used = used - 1 WHERE "key" = OLD."key"'


def upgrade() -> None:
    op.create_table(
        "rate_counts",
        sa.Column("key", sa.String(length=340), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_counts")),
    )
    op.execute(
        'INSERT INTO rate_counts ("key", used) '
        'SELECT "key", count(*) FROM rate_slots GROUP BY "key"'
    )
    if op.get_bind().dialect.name == "postgresql":
        # Row triggers: a prune that deletes nothing (the usual case) costs nothing.
        for name, body in (("add", ADD), ("take", TAKE), ("move", f"{TAKE}; {ADD}")):
            op.execute(f"""
                CREATE FUNCTION osfmilter_rate_counts_{name}() RETURNS trigger
                LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$
            """)
        op.execute(
            "CREATE FUNCTION osfmilter_rate_counts_clear() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN DELETE FROM rate_counts; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER rate_slots_count_insert AFTER INSERT ON rate_slots "
            "FOR EACH ROW EXECUTE FUNCTION osfmilter_rate_counts_add()"
        )
        op.execute(
            "CREATE TRIGGER rate_slots_count_delete AFTER DELETE ON rate_slots "
            "FOR EACH ROW EXECUTE FUNCTION osfmilter_rate_counts_take()"
        )
        op.execute(
            'CREATE TRIGGER rate_slots_count_rekey AFTER UPDATE OF "key" ON rate_slots '
            'FOR EACH ROW WHEN (OLD."key" IS DISTINCT FROM NEW."key") '
            "EXECUTE FUNCTION osfmilter_rate_counts_move()"
        )
        op.execute(
            "CREATE TRIGGER rate_slots_count_truncate AFTER TRUNCATE ON rate_slots "
            "FOR EACH STATEMENT EXECUTE FUNCTION osfmilter_rate_counts_clear()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER rate_slots_count_insert AFTER INSERT ON rate_slots BEGIN {ADD}; END"
        )
        op.execute(
            f"CREATE TRIGGER rate_slots_count_delete AFTER DELETE ON rate_slots BEGIN {TAKE}; END"
        )
        op.execute(
            f'CREATE TRIGGER rate_slots_count_rekey AFTER UPDATE OF "key" ON rate_slots '
            f'WHEN OLD."key" IS NOT NEW."key" BEGIN {TAKE}; {ADD}; END'
        )


def downgrade() -> None:
    for trigger in ("insert", "delete", "rekey"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER rate_slots_count_{trigger} ON rate_slots")
        else:
            op.execute(f"DROP TRIGGER rate_slots_count_{trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER rate_slots_count_truncate ON rate_slots")
        for name in ("add", "take", "move", "clear"):
            op.execute(f"DROP FUNCTION osfmilter_rate_counts_{name}()")
    op.drop_table("rate_counts")

"""Networks of different customers never overlap: the database itself refuses it.

Revision ID: 0008
Revises: 0007

``osfmilter server add`` looked for an overlapping network, then inserted:
two at once, for different customers, could both succeed, and a client in
both networks belonged to whichever the lookup found first. The database now
refuses the second, whoever inserts it (the CLI, another relay node, an
operator's own SQL). PostgreSQL: an exclusion constraint on the network as
``inet`` (``&&``: one contains the other) and the customer (``<>``), which
needs the btree_gist extension (in PostgreSQL's contrib, trusted: the
database owner may create it). SQLite: triggers; SQLite has one writer at a
time, so a trigger sees every registration committed before it.

One customer's networks may still nest (a /24 and a host in it), and the
same network twice stays refused by its unique constraint, as before.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from osfmilter.errors import StorageError

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ex_smtp_servers_network_overlap"
# A row of another customer whose range meets NEW's; "IS NOT": an insert's NEW.id is NULL.
REFUSE = (
    "SELECT RAISE(ABORT, 'ex_smtp_servers_network_overlap: "
    "the network overlaps another customer''s') "
    "WHERE EXISTS (SELECT 1 FROM smtp_servers AS other "
    "WHERE other.family = NEW.family AND other.customer_id <> NEW.customer_id "
    "AND other.first_address <= NEW.last_address AND other.last_address >= NEW.first_address "
    "AND other.id IS NOT NEW.id)"
)
TRIGGERS = {
    "smtp_servers_no_overlap_insert": "BEFORE INSERT ON smtp_servers",
    "smtp_servers_no_overlap_update": (
        "BEFORE UPDATE OF customer_id, family, first_address, last_address ON smtp_servers"
    ),
}
OVERLAPS = text("""
    SELECT a.network, ca.name, b.network, cb.name
    FROM smtp_servers AS a
    JOIN smtp_servers AS b ON b.family = a.family AND b.id > a.id
        AND b.customer_id <> a.customer_id
        AND b.first_address <= a.last_address AND b.last_address >= a.first_address
    JOIN customers AS ca ON ca.id = a.customer_id
    JOIN customers AS cb ON cb.id = b.customer_id
    ORDER BY a.id, b.id
    LIMIT 3
""")


def upgrade() -> None:
    _refuse_existing_overlaps()
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            f"ALTER TABLE smtp_servers ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
            "((network::inet) inet_ops WITH &&, customer_id WITH <>)"
        )
    else:
        for name, when in TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN {REFUSE}; END")


def _refuse_existing_overlaps() -> None:
    """Overlaps registered before this revision: the operator decides which one goes."""
    pairs = op.get_bind().execute(OVERLAPS).all()
    if pairs:
        listed = "; ".join(
            f"{a} ({owner_a!r}) overlaps {b} ({owner_b!r})" for a, owner_a, b, owner_b in pairs
        )
        raise StorageError(
            f"schema revision 0008 forbids networks of different customers to overlap: "
            f"{listed}; remove one of each (osfmilter server remove), then upgrade again"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # btree_gist stays: other schemas in the database may use it.
        op.execute(f"ALTER TABLE smtp_servers DROP CONSTRAINT {CONSTRAINT}")
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")

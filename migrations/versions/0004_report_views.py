"""Report views for SQL users: monthly volume, customers, refusals, states, state changes.

Revision ID: 0004
Revises: 0003

The views give the figures of ``osfmilter report`` (contrib/sql/reports.sql
shows the queries); they are not models, so autogenerate ignores them.

SQLite checks every view when a table is renamed, and a batch migration
(render_as_batch) renames a copy over the table it rebuilds: a later
revision that batch-alters a table read here must drop these views first
and create them again after (copy their text; this revision is not edited).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The calendar month (UTC, YYYY-MM) a customer was created in. SQLite keeps
# UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
CREATED_MONTH = {
    "sqlite": "substr(c.created_at, 1, 7)",
    "postgresql": "to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM')",
}

VIEWS = {
    # One row per customer, domain, month and direction (the milter's counters).
    "report_monthly_volume": """
        SELECT v.month, c.name AS customer, c.plan, v.domain, v.direction,
               v.messages, v.bytes
        FROM monthly_volume v
        JOIN customers c ON c.id = v.customer_id
    """,
    # Every customer with its current plan and the month it was created in.
    "report_customers": """
        SELECT c.name AS customer, c.plan, {created_month} AS created_month
        FROM customers c
    """,
    # Every decision that was not an accept; an unregistered client is named by its address.
    "report_refused_events": """
        SELECT e.at, COALESCE(NULLIF(e.identity, ''), 'unregistered:' || e.client_ip) AS identity,
               c.name AS customer, e.action, e.reason, e.smtp_code, e.enhanced_code,
               e.queue_id, e.client_ip, e.node
        FROM events e
        LEFT JOIN customers c ON c.id = e.customer_id
        WHERE e.action <> 'accept'
    """,
    # Refusals per identity and reason over every event still stored.
    "report_refusals": """
        SELECT identity, customer, reason, COUNT(*) AS count, MAX(at) AS last_at
        FROM report_refused_events
        GROUP BY identity, customer, reason
    """,
    # Every sender identity, its state, since when, and its latest state change.
    "report_states": """
        SELECT 'server' AS kind, 'server:' || s.network AS identity, c.name AS customer,
               s.state, s.state_changed_at AS since,
               (SELECT h.reason FROM state_history h WHERE h.smtp_server_id = s.id
                ORDER BY h.at DESC, h.id DESC LIMIT 1) AS last_reason,
               (SELECT h.actor FROM state_history h WHERE h.smtp_server_id = s.id
                ORDER BY h.at DESC, h.id DESC LIMIT 1) AS last_actor
        FROM smtp_servers s
        JOIN customers c ON c.id = s.customer_id
        UNION ALL
        SELECT 'sasl' AS kind, 'sasl:' || a.login AS identity, c.name AS customer,
               a.state, a.state_changed_at AS since,
               (SELECT h.reason FROM state_history h WHERE h.sasl_account_id = a.id
                ORDER BY h.at DESC, h.id DESC LIMIT 1) AS last_reason,
               (SELECT h.actor FROM state_history h WHERE h.sasl_account_id = a.id
                ORDER BY h.at DESC, h.id DESC LIMIT 1) AS last_actor
        FROM sasl_accounts a
        JOIN customers c ON c.id = a.customer_id
    """,
    # Every state change, with the identity named as in events.
    "report_state_changes": """
        SELECT h.at,
               CASE WHEN h.smtp_server_id IS NOT NULL THEN 'server:' || s.network
                    ELSE 'sasl:' || a.login END AS identity,
               c.name AS customer, h.old_state, h.new_state, h.reason, h.actor
        FROM state_history h
        LEFT JOIN smtp_servers s ON s.id = h.smtp_server_id
        LEFT JOIN sasl_accounts a ON a.id = h.sasl_account_id
        LEFT JOIN customers c ON c.id = COALESCE(s.customer_id, a.customer_id)
    """,
}


def upgrade() -> None:
    created_month = CREATED_MONTH[op.get_bind().dialect.name]
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query.format(created_month=created_month).strip()}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")

"""The portal's sessions and login failures, and the audit log of every change.

Revision ID: 0014
Revises: 0013

``web_sessions`` holds one row per logged-in browser: the cookie carries a
random secret, the row only its SHA-256, so a copy of the database logs no
one in; logging out or removing the user deletes the row. ``login_failures``
counts failed logins per login and per address for the throttle; it is kept
in the database so the throttle holds across several web nodes.
``audit_log`` records every change made through the portal, the API or the
command line: who, when, what, from which address. The milter reads none of
these tables, so none raises ``registry_version``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remote_addr", sa.String(45), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("login", sa.String(320), nullable=False),
        sa.Column("remote_addr", sa.String(45), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(op.f("ix_login_failures_at"), "login_failures", ["at"])
    op.create_index(op.f("ix_login_failures_login"), "login_failures", ["login"])
    op.create_index(op.f("ix_login_failures_remote_addr"), "login_failures", ["remote_addr"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("via", sa.String(8), nullable=False),
        sa.Column("remote_addr", sa.String(45), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("customer", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.CheckConstraint("via IN ('portal', 'api', 'cli')", name=op.f("ck_audit_log_via")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_audit_log_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_customer_id"), "audit_log", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_customer_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_login_failures_remote_addr"), table_name="login_failures")
    op.drop_index(op.f("ix_login_failures_login"), table_name="login_failures")
    op.drop_index(op.f("ix_login_failures_at"), table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index(op.f("ix_web_sessions_expires_at"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")

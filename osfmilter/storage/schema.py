"""The SQL tables (docs/records.rst, 'Tables'), as SQLAlchemy 2 typed models.

Operators query these tables directly: names and columns are an interface.
Every timestamp is stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATES = "'veilig', 'verdacht', 'onveilig'"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (CheckConstraint("plan IN ('free', 'paid')", name="plan"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    plan: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    domains: Mapped[list[ScannedDomain]] = relationship(back_populates="customer")
    servers: Mapped[list[SmtpServer]] = relationship(back_populates="customer")
    sasl_accounts: Mapped[list[SaslAccount]] = relationship(back_populates="customer")
    users: Mapped[list[User]] = relationship(back_populates="customer")
    # Removing a customer takes its revoked tokens with it (storage.admin
    # refuses while a live one is left).
    api_tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="customer", cascade="all, delete-orphan"
    )
    # Whom notifications reach (docs/notifications: README.rst, 'Notifications');
    # they go with the customer.
    contacts: Mapped[list[CustomerContact]] = relationship(
        back_populates="customer", cascade="all, delete-orphan"
    )
    webhooks: Mapped[list[Webhook]] = relationship(
        back_populates="customer", cascade="all, delete-orphan"
    )


DOMAIN_STATES = "'verified', 'pending'"
DKIM_ALGORITHMS = "'rsa-sha256', 'ed25519-sha256'"
DKIM_KEY_STATES = "'active', 'retiring'"


class ScannedDomain(Base):
    """A customer's domain: ``verified`` domains are the customer's own, ``pending`` ones not yet.

    A pending domain waits for ``_osfmilter.DOMAIN TXT
    "osfmilter-verification=TOKEN"``; until then it is neither known nor
    protected (docs/domains.rst).
    """

    __tablename__ = "scanned_domains"
    __table_args__ = (CheckConstraint(f"state IN ({DOMAIN_STATES})", name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default="verified", server_default="verified")
    # The token a pending domain's TXT record must hold; kept once verified.
    verification_token: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship(back_populates="domains")
    dkim_keys: Mapped[list[DkimKey]] = relationship(
        back_populates="domain", cascade="all, delete-orphan"
    )


class DkimKey(Base):
    """A DKIM signing key of a domain; the private half is a file only the milter reads.

    One key per domain is ``active`` (it signs); a rotated-out key is
    ``retiring`` and stays published until ``retire_after``.
    """

    __tablename__ = "dkim_keys"
    __table_args__ = (
        CheckConstraint(f"algorithm IN ({DKIM_ALGORITHMS})", name="algorithm"),
        CheckConstraint(f"state IN ({DKIM_KEY_STATES})", name="state"),
        UniqueConstraint("domain_id", "selector"),
        Index(
            "ix_dkim_keys_one_active",
            "domain_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("scanned_domains.id", ondelete="CASCADE"))
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(16))
    # The record's p= value: base64 of the public key (DER SubjectPublicKeyInfo
    # for RSA, the raw 32 bytes for Ed25519).
    public_key: Mapped[str] = mapped_column(String(1000))
    state: Mapped[str] = mapped_column(String(10), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retire_after: Mapped[datetime | None] = mapped_column(UTCDateTime())

    domain: Mapped[ScannedDomain] = relationship(back_populates="dkim_keys")


class SmtpServer(Base):
    """A customer's sending server: one address or a CIDR network."""

    __tablename__ = "smtp_servers"
    __table_args__ = (
        CheckConstraint("family IN (4, 6)", name="family"),
        CheckConstraint(f"state IN ({STATES})", name="state"),
        # Longest-prefix match: a range scan on (family, first_address).
        Index("ix_smtp_servers_lookup", "family", "first_address", "last_address"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    network: Mapped[str] = mapped_column(String(43), unique=True)
    family: Mapped[int] = mapped_column(SmallInteger)
    prefix_len: Mapped[int] = mapped_column(SmallInteger)
    # Fixed-width hex of the first and last address (see osfmilter.addresses).
    first_address: Mapped[str] = mapped_column(String(32))
    last_address: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(10), default="veilig")
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The latest spam, virus or usage incident: verdacht recovers from it.
    last_incident_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What the customer calls it ("the web shop"): shown, never matched.
    description: Mapped[str | None] = mapped_column(String(200))

    customer: Mapped[Customer] = relationship(back_populates="servers")


class SaslAccount(Base):
    """A login for a customer whose sender runs on third-party hosting."""

    __tablename__ = "sasl_accounts"
    __table_args__ = (CheckConstraint(f"state IN ({STATES})", name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    login: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(10), default="veilig")
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The latest spam, virus or usage incident: verdacht recovers from it.
    last_incident_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What Dovecot checks a login's password against (osfmilter.passwords);
    # None: the account cannot log in. Deferred: loading an account (the
    # milter's state changes, the CLI's lists) never reads it.
    password_hash: Mapped[str | None] = mapped_column(String(255), deferred=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship(back_populates="sasl_accounts")


# A row belongs to one customer, or is the operator's: never both, never neither.
OWNER_CHECK = (
    "(is_operator AND customer_id IS NULL) OR (NOT is_operator AND customer_id IS NOT NULL)"
)


class User(Base):
    """Someone who logs in to the portal: a customer's user, or an operator.

    The milter never reads this table, so it raises no registry version.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(OWNER_CHECK, name="owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Lower-case (osfmilter.registration.normalize_email): one account per address.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # None: an operator, who reaches every customer.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    is_operator: Mapped[bool] = mapped_column(Boolean)
    # osfmilter.passwords.hash_password's form ({ARGON2ID} and a PHC string).
    # Deferred: listing users never reads it.
    password_hash: Mapped[str] = mapped_column(String(255), deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer | None] = relationship(back_populates="users")


class ApiToken(Base):
    """A bearer token of the API (osfmilter.tokens): a customer's, or an operator's.

    Only a hash of the token is stored. The milter never reads this table,
    so it raises no registry version.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(OWNER_CHECK, name="owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The token's public part (osf_PREFIX_SECRET): found by it, shown in lists.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # SHA-256 of the whole token, in hex. Deferred: lists never read it.
    token_hash: Mapped[str] = mapped_column(String(64), deferred=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    is_operator: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who made it: a user's e-mail address, or the command line's --by.
    created_by: Mapped[str] = mapped_column(String(320))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set: the token no longer authenticates; the row stays as a record.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer | None] = relationship(back_populates="api_tokens")


class WebSession(Base):
    """A browser logged in to the portal (osfmilter.web.portal.sessions).

    The cookie carries a random secret; the row holds only its SHA-256, so
    a copy of the database logs no one in. Deleted at logout, at expiry and
    with its user.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The synchronizer token every state-changing form must carry.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    remote_addr: Mapped[str] = mapped_column(String(45))

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """One failed portal login: what the login throttle counts, per login and per address.

    ``login`` is the SHA-256 (hex) of the address typed, normalized, whether
    or not such a user exists: never the text, which may be a password;
    ``remote_addr`` an IPv4 address or an IPv6 /64. Every attempt has a row
    from before its password is checked, and a right one deletes it again.
    Rows older than the throttle's window are deleted as logins are checked.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    login: Mapped[str] = mapped_column(String(320), index=True)
    remote_addr: Mapped[str] = mapped_column(String(45), index=True)


class AuditEntry(Base):
    """One change made through the portal, the API or the command line; never updated.

    ``actor`` is a user's e-mail address, ``token:PREFIX`` for an API token,
    or the command line's ``--by``. ``customer`` keeps the name after the
    customer is removed. No secret is ever written here.
    """

    __tablename__ = "audit_log"
    __table_args__ = (CheckConstraint("via IN ('portal', 'api', 'cli')", name="via"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    via: Mapped[str] = mapped_column(String(8))
    remote_addr: Mapped[str] = mapped_column(String(45), default="")
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    customer: Mapped[str] = mapped_column(String(100), default="")
    # A dotted verb: server.add, sasl.passwd, identity.release, ...
    action: Mapped[str] = mapped_column(String(64))
    # What it acted on: a network, a login, a domain, a token prefix.
    target: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")


class StateChange(Base):
    """One row per state transition of a sender identity; never updated."""

    __tablename__ = "state_history"
    __table_args__ = (
        CheckConstraint(
            "(smtp_server_id IS NULL) <> (sasl_account_id IS NULL)", name="one_identity"
        ),
        CheckConstraint(f"new_state IN ({STATES})", name="new_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    smtp_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("smtp_servers.id", ondelete="CASCADE"), index=True
    )
    sasl_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("sasl_accounts.id", ondelete="CASCADE"), index=True
    )
    old_state: Mapped[str] = mapped_column(String(10))
    new_state: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(100))


class Event(Base):
    """One row per decision the milter made (docs/records.rst, 'Event rows')."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_customer_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    node: Mapped[str] = mapped_column(String(64))
    queue_id: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(8))
    client_ip: Mapped[str] = mapped_column(String(45))
    identity: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    smtp_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("smtp_servers.id", ondelete="SET NULL"), index=True
    )
    sasl_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("sasl_accounts.id", ondelete="SET NULL"), index=True
    )
    envelope_sender: Mapped[str] = mapped_column(String(320))
    header_from_domain: Mapped[str] = mapped_column(String(253))
    rcpt_count: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(32))
    smtp_code: Mapped[int | None] = mapped_column(SmallInteger)
    enhanced_code: Mapped[str] = mapped_column(String(9))
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_rules: Mapped[str] = mapped_column(String(500), default="")
    virus_name: Mapped[str] = mapped_column(String(200), default="")
    spf_result: Mapped[str] = mapped_column(String(16), default="")
    # The policy steps that ran (osfmilter.policy.pipeline), comma-separated.
    checks: Mapped[str] = mapped_column(String(300), default="")


class RateSlot(Base):
    """One message in a sender's 5-minute window: reserved at MAIL, committed at accept.

    A pending slot holds capacity until it is committed, released, or its
    reservation expires (a milter that died mid-transaction). A committed
    slot counts until ``at`` + the window. Rows older than that are deleted
    when the key's count reaches its limit (and by retention), so a key
    holds at most its limit of rows.
    """

    __tablename__ = "rate_slots"
    __table_args__ = (Index("ix_rate_slots_key_pending_at", "key", "pending", "at"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(340))
    reservation: Mapped[str] = mapped_column(String(32), index=True)
    pending: Mapped[bool] = mapped_column()
    # Epoch seconds: for a pending slot when its reservation expires, for a
    # committed one when the message was accepted.
    at: Mapped[float] = mapped_column(Float)


class RateCount(Base):
    """How many rate_slots rows a key has: kept by the database's triggers (migration 0007).

    The admission prunes the key's expired slots, then reads this row
    instead of counting the window.
    """

    __tablename__ = "rate_counts"

    key: Mapped[str] = mapped_column(String(340), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)


class RegistryVersion(Base):
    """One row: raised by triggers on every change to the registry (migration 0005).

    The milter keeps identities in memory for as long as this number stands.
    """

    __tablename__ = "registry_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class MonthlyVolume(Base):
    """Bytes × recipients per domain and calendar month (UTC), outbound and inbound.

    ``domain`` is the customer's scanned domain the mail was attributed to;
    the empty domain is the customer's bucket for unknown senders. Totals
    survive the purging of old events.
    """

    __tablename__ = "monthly_volume"
    __table_args__ = (
        UniqueConstraint("month", "direction", "customer_id", "domain"),
        CheckConstraint("direction IN ('outbound', 'inbound')", name="direction"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    direction: Mapped[str] = mapped_column(String(8))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))
    messages: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class ReputationEvidence(Base):
    """What the reputation rules still count for an identity
    (docs/states.rst, 'What counts against an identity').

    ``detection``: a spam or virus detection inside the auto-block window;
    ``refusal``: a limit refusal inside the usage window, not yet part of a
    usage incident. Rows are deleted as they stop counting, so an identity
    holds at most ``[reputation] auto_block_detections + usage_refusals`` of
    them; the lasting record is ``state_history`` and ``events``.
    """

    __tablename__ = "reputation_evidence"
    __table_args__ = (
        CheckConstraint(
            "(smtp_server_id IS NULL) <> (sasl_account_id IS NULL)", name="one_identity"
        ),
        CheckConstraint("kind IN ('detection', 'refusal')", name="kind"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    smtp_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("smtp_servers.id", ondelete="CASCADE"), index=True
    )
    sasl_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("sasl_accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))


DELIVERY_STATES = "'pending', 'sent', 'failed'"
CHANNELS = "'email', 'webhook'"


class CustomerContact(Base):
    """An address a customer's notification e-mails go to."""

    __tablename__ = "customer_contacts"
    __table_args__ = (UniqueConstraint("customer_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship(back_populates="contacts")


class Webhook(Base):
    """A URL a customer's notifications are posted to, signed with ``secret``.

    The secret is kept as it is, because the sender signs with it; it is
    shown once, when the webhook is added, and never printed or logged again.
    ``public_only`` (a customer's, from the portal) makes the sender post
    only to public addresses, never to the relay's own or internal network;
    an operator's (``osfmilter webhook add``) may reach loopback.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    public_only: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    customer: Mapped[Customer] = relationship(back_populates="webhooks")


class Notification(Base):
    """The outbox: one row per notification, written in the transaction of its cause.

    ``id`` is the event id a receiver drops duplicates by (a UUID).
    ``dedup_key`` makes a notice that may only be sent once per month or day
    (a volume threshold, a customer's first refusal of a kind) a conflict the
    second time; empty (NULL) for a state change, which is always new.
    """

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    identity: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[str] = mapped_column(Text)  # a JSON object
    dedup_key: Mapped[str | None] = mapped_column(String(400), unique=True)


class NotificationDelivery(Base):
    """One channel's delivery of a notification: the e-mail to the contacts, or one webhook."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        CheckConstraint(f"state IN ({DELIVERY_STATES})", name="state"),
        CheckConstraint(f"channel IN ({CHANNELS})", name="channel"),
        CheckConstraint("(channel = 'webhook') = (webhook_id IS NOT NULL)", name="webhook"),
        Index("ix_notification_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(8))
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationCursor(Base):
    """How far the sender has read a table it derives notices from: ``events`` for the
    relay refusals of unregistered clients sending as a customer's domain.

    The milter writes such a refusal's event row and nothing more (finding
    the domain's owner would cost it a lookup per refused message); the
    sender reads the committed rows after ``last_id`` and writes their
    notices and the new ``last_id`` in one transaction.
    """

    __tablename__ = "notification_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)

"""Server-side portal sessions in ``web_sessions``: the cookie holds a secret, the row its hash.

The cookie ``osfmilter_session`` carries 256 random bits; the row holds
only their SHA-256, so a copy of the database logs no one in. Every login
makes a new row (the session id rotates) and deletes the one the browser
came with; logout deletes it. A session ends ``[web] session_hours`` after
the login, or ``session_idle_minutes`` after it was last used.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from osfmilter.config import WebSection
from osfmilter.storage.schema import User, WebSession

COOKIE = "osfmilter_session"
SECRET_BYTES = 32  # 256 bits
# last_seen_at is written at most this often per session, not on every page.
SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Lifetime:
    """How long a session lasts: from the login, and unused."""

    absolute: timedelta
    idle: timedelta

    @classmethod
    def from_config(cls, web: WebSection) -> Lifetime:
        return cls(timedelta(hours=web.session_hours), timedelta(minutes=web.session_idle_minutes))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def start(
    session: Session,
    user: User,
    remote_addr: str,
    now: datetime,
    lifetime: Lifetime,
    previous_secret: str | None = None,
) -> tuple[str, WebSession]:
    """A new session for a user who just logged in: (the cookie's secret, its row).

    The session the browser came with, if any, is deleted: its id does not
    survive the login. Expired sessions of anyone are deleted too.
    """
    if previous_secret:
        session.execute(
            delete(WebSession).where(WebSession.token_hash == hash_secret(previous_secret))
        )
    session.execute(
        delete(WebSession).where(
            or_(WebSession.expires_at <= now, WebSession.last_seen_at <= now - lifetime.idle)
        )
    )
    secret = secrets.token_urlsafe(SECRET_BYTES)
    row = WebSession(
        token_hash=hash_secret(secret),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(SECRET_BYTES),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime.absolute,
        remote_addr=remote_addr[:45],
    )
    session.add(row)
    session.flush()
    return secret, row


def find(session: Session, secret: str, now: datetime, lifetime: Lifetime) -> WebSession | None:
    """The live session a cookie's secret opens, marked as used; None if there is none.

    An expired or idle one is deleted on the way.
    """
    if not secret or len(secret) > 100:
        return None
    row = session.scalars(
        select(WebSession).where(WebSession.token_hash == hash_secret(secret))
    ).one_or_none()
    if row is None:
        return None
    if now >= row.expires_at or now >= row.last_seen_at + lifetime.idle:
        session.delete(row)
        return None
    if now - row.last_seen_at >= SEEN_RESOLUTION:
        row.last_seen_at = now
    return row


def end(session: Session, secret: str) -> None:
    """Logout: the session's row is deleted, so its cookie opens nothing any more."""
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_secret(secret)))

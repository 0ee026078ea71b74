"""The login throttle: 5 failures for one login, or from one address, within 15 minutes.

Failures are counted in ``login_failures`` whether or not the login names a
user, so the answer tells nothing about which accounts exist. A success
resets neither count: an address that guesses one password right does not
win five more guesses elsewhere. Rows older than the window are deleted as
logins are checked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from osfmilter.errors import UsageError
from osfmilter.registration import normalize_email
from osfmilter.storage.schema import LoginFailure

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
# How long a throttled (429) answer is held back: it slows a guesser down
# without holding a worker thread (the wait is asyncio's).
DELAY_SECONDS = 1.0
MAX_LOGIN = 320
MAX_ADDR = 45


def normalize(login: str) -> str:
    """The login as counted: the normalized e-mail address, or the text as typed."""
    try:
        text = normalize_email(login)
    except UsageError:
        text = login.strip().lower()
    return text[:MAX_LOGIN]


def throttled(session: Session, login: str, remote_addr: str, now: datetime) -> bool:
    """Has this login, or this address, failed too often lately? Forgets older failures."""
    since = now - WINDOW
    session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
    for column, value in (
        (LoginFailure.login, normalize(login)),
        (LoginFailure.remote_addr, remote_addr[:MAX_ADDR]),
    ):
        count = session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(column == value, LoginFailure.at > since)
        )
        if (count or 0) >= MAX_FAILURES:
            return True
    return False


def record_failure(session: Session, login: str, remote_addr: str, now: datetime) -> None:
    session.add(LoginFailure(at=now, login=normalize(login), remote_addr=remote_addr[:MAX_ADDR]))

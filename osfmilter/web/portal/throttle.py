"""The login throttle: 5 failures for one login, or from one address, within 15 minutes.

An address counts as :func:`~osfmilter.web.clients.client_key` has it (an
IPv6 client as its /64). Failures
are counted in ``login_failures`` whether or not the login names a user, so
the answer tells nothing about which accounts exist. A success resets
neither count: an address that guesses one password right does not win
five more guesses elsewhere. Rows older than the window are deleted as
logins are checked. Each attempt is counted before its password is
checked, and uncounted if it was right, so parallel guesses cannot all
slip under the limit (rspamd's ratelimit reserves the same way). A login
is kept as the SHA-256 of its normalized text, never the text: people type
a password into the e-mail field, and the count needs only equality.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from osfmilter.errors import UsageError
from osfmilter.registration import normalize_email
from osfmilter.storage.schema import LoginFailure
from osfmilter.web.clients import client_key

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
# How long a throttled (429) answer is held back: it slows a guesser down
# without holding a worker thread (the wait is asyncio's).
DELAY_SECONDS = 1.0
MAX_LOGIN = 320


def login_key(login: str) -> str:
    """The login as counted and stored: the SHA-256 (hex) of the normalized e-mail address,
    or of the text as typed."""
    try:
        text = normalize_email(login)
    except UsageError:
        text = login.strip().lower()
    return hashlib.sha256(text[:MAX_LOGIN].encode("utf-8")).hexdigest()


def reserve(session: Session, login: str, remote_addr: str, now: datetime) -> int:
    """Count this attempt as a failure before its password is checked: its row's id.

    Commit it before :func:`throttled`, so that parallel attempts each see the
    ones before them (check, then insert, let them all pass at the limit).
    Forgets older failures.
    """
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
    row = LoginFailure(at=now, login=login_key(login), remote_addr=client_key(remote_addr))
    session.add(row)
    session.flush()
    return row.id


def throttled(session: Session, reserved: int, login: str, remote_addr: str, now: datetime) -> bool:
    """Is the attempt ``reserved`` beyond the limit, for its login or its address?"""
    since = now - WINDOW
    for column, value in (
        (LoginFailure.login, login_key(login)),
        (LoginFailure.remote_addr, client_key(remote_addr)),
    ):
        count = session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(column == value, LoginFailure.at > since, LoginFailure.id <= reserved)
        )
        if (count or 0) > MAX_FAILURES:
            return True
    return False


def succeeded(session: Session, reserved: int) -> None:
    """The attempt ``reserved`` had the right password: it is no failure."""
    session.execute(delete(LoginFailure).where(LoginFailure.id == reserved))

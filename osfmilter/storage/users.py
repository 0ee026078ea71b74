"""Portal users and API tokens, as the command line (and later the portal) changes them.

Like :mod:`osfmilter.storage.admin`: each function works inside the
caller's transaction and raises :class:`~osfmilter.errors.UsageError` with
one line naming the problem. An owner is a customer's name, or None for the
operator. Hashes are made by the caller (osfmilter.passwords,
osfmilter.tokens), outside the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from osfmilter import passwords
from osfmilter.errors import UsageError
from osfmilter.registration import normalize_email
from osfmilter.storage.admin import get_customer
from osfmilter.storage.schema import ApiToken, Customer, User, WebSession

MAX_TOKEN_NAME = 100
MAX_CREATED_BY = 320


def _owner(session: Session, customer_name: str | None) -> Customer | None:
    return None if customer_name is None else get_customer(session, customer_name)


def add_user(
    session: Session, email: str, customer_name: str | None, password_hash: str, now: datetime
) -> User:
    """A customer's user (``customer_name``) or an operator (None)."""
    email = normalize_email(email)
    customer = _owner(session, customer_name)
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise UsageError(f"user {email!r} already exists")
    user = User(
        email=email,
        customer=customer,
        is_operator=customer is None,
        password_hash=password_hash,
        created_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, email: str) -> User:
    try:
        normalized = normalize_email(email)
    except UsageError:
        normalized = email.strip()
    user = session.scalars(select(User).where(User.email == normalized)).one_or_none()
    if user is None:
        raise UsageError(f"no user {email.strip()!r}")
    return user


@cache
def _nobody() -> str:
    """Checked when no user has the address, so that a login takes as long either way."""
    return passwords.hash_password("no user has this password")


@dataclass(frozen=True)
class LoginHash:
    """The user a login names and the hash to check its password against, read in a short
    transaction so that no transaction stays open during Argon2."""

    user_id: int | None  # None: no such user, and no hash
    password_hash: str


def login_hash(session: Session, email: str) -> LoginHash:
    try:
        normalized = normalize_email(email)
    except UsageError:
        normalized = None
    row = (
        session.execute(
            select(User.id, User.password_hash).where(User.email == normalized)
        ).one_or_none()
        if normalized is not None
        else None
    )
    return LoginHash(None, "") if row is None else LoginHash(row[0], row[1])


def password_matches(found: LoginHash, password: str) -> bool:
    """One Argon2id check (0.1 s) whether or not the user exists, so the time does not
    tell; outside any transaction."""
    if found.user_id is None:
        # The dummy hash is made here too (once), not in the caller's transaction.
        passwords.verify(_nobody(), password)
        return False
    return passwords.verify(found.password_hash, password)


def mark_login(session: Session, found: LoginHash, now: datetime) -> User | None:
    """The user of a checked login, marked as logged in; None if the user was removed or
    the password changed since the check."""
    user = session.get(User, found.user_id) if found.user_id is not None else None
    if user is None or user.password_hash != found.password_hash:
        return None
    user.last_login_at = now
    return user


def check_login(session: Session, email: str, password: str, now: datetime) -> User | None:
    """The user whose address and password these are, else None; marks the login.

    All in the caller's transaction: the portal uses the three steps apart
    (login_hash, password_matches, mark_login) so as to hold no transaction
    during Argon2. Throttling failed logins is the caller's.
    """
    found = login_hash(session, email)
    return mark_login(session, found, now) if password_matches(found, password) else None


def set_user_password(session: Session, email: str, password_hash: str, now: datetime) -> User:
    """A new password, and every portal session of the user ended: whoever knew the old
    one is logged out too."""
    user = get_user(session, email)
    user.password_hash = password_hash
    user.password_changed_at = now
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return user


def remove_user(session: Session, email: str) -> None:
    session.delete(get_user(session, email))


def add_token(
    session: Session,
    prefix: str,
    token_hash: str,
    customer_name: str | None,
    now: datetime,
    *,
    name: str = "",
    created_by: str,
) -> ApiToken:
    """Store a token made by osfmilter.tokens.generate (its prefix and hash, never itself)."""
    name = _one_line(name, "token name", MAX_TOKEN_NAME, empty_ok=True)
    created_by = _one_line(created_by, "creator", MAX_CREATED_BY, empty_ok=False)
    customer = _owner(session, customer_name)
    token = ApiToken(
        prefix=prefix,
        token_hash=token_hash,
        customer=customer,
        is_operator=customer is None,
        name=name,
        created_at=now,
        created_by=created_by,
    )
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, text: str) -> ApiToken:
    """A token by its row id, its prefix, ``osf_PREFIX``, or the whole token."""
    key = text.strip()
    if key.isascii() and key.isdigit() and len(key) <= 18:
        query = select(ApiToken).where(ApiToken.id == int(key))
    else:
        prefix = key.removeprefix("osf_").partition("_")[0]
        query = select(ApiToken).where(ApiToken.prefix == prefix)
    token = session.scalars(query).one_or_none()
    if token is None:
        # Never echo what was given: it may be a whole token.
        raise UsageError("no such API token (give its id or its prefix, as token list shows)")
    return token


def revoke_token(session: Session, text: str, now: datetime) -> ApiToken:
    """Revoke a token at once; revoking it again changes nothing."""
    token = find_token(session, text)
    if token.revoked_at is None:
        token.revoked_at = now
    return token


def _one_line(text: str, what: str, limit: int, *, empty_ok: bool) -> str:
    text = text.strip()
    if not text and not empty_ok:
        raise UsageError(f"the {what} must not be empty")
    if len(text) > limit:
        raise UsageError(f"the {what} is too long: at most {limit} characters")
    # isprintable: no control, format (bidi, zero-width) or line separator character.
    if not text.isprintable():
        raise UsageError(f"the {what} must be one line of printable characters")
    return text

"""CSRF protection of every state-changing form.

A logged-in form carries the session's synchronizer token
(``web_sessions.csrf_token``). The login form comes before any session, so
it uses a double-submit cookie: ``osfmilter_login_csrf`` holds a random
value the form repeats. Either is compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf_token"
LOGIN_COOKIE = "osfmilter_login_csrf"
TOKEN_BYTES = 32
REFUSED = "The form has expired or did not come from this site."


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def matches(expected: str | None, given: str | None) -> bool:
    """Does the form's token equal the expected one? Empty never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))

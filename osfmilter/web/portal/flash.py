"""One-time messages after a redirect ("Server 81.2.69.7/32 added."), in a signed cookie.

The cookie holds the text and an HMAC of it keyed by the session's CSRF
token, so no other site (nor another session) can plant a message. It is
read once and deleted by the page that shows it. Never a secret in it: a
new password or token is shown on the POST's own page, not flashed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from osfmilter.web.context import WebContext
from osfmilter.web.portal import cookies

if TYPE_CHECKING:
    from osfmilter.web.portal.auth import PortalUser

COOKIE = "osfmilter_flash"
MAX_TEXT = 500


def _mac(key: str, text: str) -> str:
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def encode(key: str, text: str) -> str:
    text = text[:MAX_TEXT]
    body = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")
    return f"{body}.{_mac(key, text)}"


def decode(key: str, value: str) -> str | None:
    body, _, mac = value.partition(".")
    try:
        text = base64.urlsafe_b64decode(body.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    return text if hmac.compare_digest(mac, _mac(key, text)) else None


def redirect(
    request: Request,
    context: WebContext,
    user: PortalUser,
    url: str,
    message: str | None = None,
) -> RedirectResponse:
    """303 to ``url`` (Post/Redirect/Get), with a message the next page shows once."""
    response = RedirectResponse(url, status_code=303)
    if message:
        cookies.set_cookie(response, request, context, COOKIE, encode(user.csrf_token, message))
    return response


def take(request: Request, user: PortalUser | None) -> str | None:
    """The message waiting for this request's page, if a valid one is there."""
    value = request.cookies.get(COOKIE)
    if not value or user is None:
        return None
    return decode(user.csrf_token, value)


def clear(response: Response, request: Request, context: WebContext) -> None:
    if COOKIE in request.cookies:
        cookies.delete_cookie(response, request, context, COOKIE)

"""Who is logged in: the session cookie to a :class:`PortalUser`, as FastAPI dependencies.

A page depends on :data:`PageUserDep` (no session: 303 to ``/login``); a
form's POST on :data:`FormUserDep`, which also checks the form's CSRF token
(a missing or wrong one: 403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, Request

from osfmilter.storage.audit import Actor
from osfmilter.storage.schema import Customer, User
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import csrf, sessions
from osfmilter.web.portal.errors import LoginRequired, PortalError

Context = Annotated[WebContext, Depends(web_context)]


@dataclass(frozen=True)
class PortalUser:
    """The logged-in user of a request: a customer's (ids and name) or an operator."""

    user_id: int
    email: str
    customer_id: int | None  # None: an operator, who sees every customer's objects
    customer_name: str | None
    is_operator: bool
    session_id: int
    csrf_token: str

    def actor(self, request: Request) -> Actor:
        """Who makes a change, for the audit log."""
        return Actor(self.email, "portal", remote_addr(request))


def remote_addr(request: Request) -> str:
    return request.client.host if request.client else ""


def safe_next(path: str | None) -> str | None:
    """A path on this site to go back to after the login; anything else is dropped."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in path) or len(path) > 500:
        return None
    return path


def login_url(request: Request) -> str:
    here = request.url.path
    if request.url.query:
        here += "?" + request.url.query
    target = safe_next(here)
    if target is None or target == "/":
        return "/login"
    return "/login?next=" + quote(target, safe="")


def find_user(request: Request, context: WebContext) -> PortalUser | None:
    """The request's logged-in user, or None (no cookie, an unknown, expired or idle session)."""
    secret = request.cookies.get(sessions.COOKIE)
    if not secret:
        return None
    lifetime = sessions.Lifetime.from_config(context.config.web)
    with context.store.session() as session:
        row = sessions.find(session, secret, context.clock.now(), lifetime)
        if row is None:
            return None
        user = session.get(User, row.user_id)
        if user is None:
            return None
        customer = session.get(Customer, user.customer_id) if user.customer_id else None
        return PortalUser(
            user_id=user.id,
            email=user.email,
            customer_id=user.customer_id,
            customer_name=customer.name if customer else None,
            is_operator=user.is_operator,
            session_id=row.id,
            csrf_token=row.csrf_token,
        )


def page_user(request: Request, context: Context) -> PortalUser:
    """FastAPI dependency: the logged-in user, else a 303 to the login page."""
    user = find_user(request, context)
    if user is None:
        raise LoginRequired(login_url(request))
    return user


def form_user(
    request: Request,
    context: Context,
    csrf_token: Annotated[str, Form()] = "",
) -> PortalUser:
    """FastAPI dependency of every state-changing form: the user, and a valid CSRF token."""
    user = find_user(request, context)
    if user is None:
        raise LoginRequired("/login")
    if not csrf.matches(user.csrf_token, csrf_token):
        raise PortalError(403, csrf.REFUSED)
    return user


PageUserDep = Annotated[PortalUser, Depends(page_user)]
FormUserDep = Annotated[PortalUser, Depends(form_user)]

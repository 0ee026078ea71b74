"""``/login`` and ``/logout``: the password check, throttled, and the session it opens.

The password is checked with Argon2id (0.3 s of CPU) in a worker thread,
never on the event loop; a throttled attempt is answered 429 after a short
asyncio wait, the same page whether or not the account exists.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum, auto
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from osfmilter.storage import users
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import cookies, csrf, sessions, throttle
from osfmilter.web.portal.auth import FormUserDep, find_user, remote_addr, safe_next
from osfmilter.web.portal.errors import PortalError
from osfmilter.web.portal.render import render

log = logging.getLogger("osfmilter.web.portal")
router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]

WRONG = "Wrong e-mail address or password."
THROTTLED = "Too many failed logins. Try again in 15 minutes."
LOGIN_CSRF_MAX_AGE = 3600
MAX_EMAIL = 320
MAX_PASSWORD = 1024


class Result(Enum):
    OK = auto()
    WRONG = auto()
    THROTTLED = auto()


@dataclass(frozen=True)
class Attempt:
    result: Result
    secret: str = ""


def _login_page(
    request: Request,
    context: WebContext,
    token: str,
    *,
    status: int = 200,
    email: str = "",
    error: str | None = None,
    next_path: str | None = None,
) -> Response:
    response = render(
        request,
        "login.html",
        None,
        status=status,
        login_csrf=token,
        email=email,
        error=error,
        next=next_path or "",
    )
    cookies.set_cookie(
        response, request, context, csrf.LOGIN_COOKIE, token, max_age=LOGIN_CSRF_MAX_AGE
    )
    return response


@router.get("/login")
def login_form(request: Request, context: Context, next: str | None = None) -> Response:
    if find_user(request, context) is not None:
        return RedirectResponse(safe_next(next) or "/", status_code=303)
    return _login_page(request, context, csrf.new_token(), next_path=safe_next(next))


def _attempt(
    context: WebContext, email: str, password: str, addr: str, previous: str | None
) -> Attempt:
    """Runs in a worker thread: the throttle, the Argon2 check, the new session."""
    now = context.clock.now()
    with context.store.session() as session:
        if throttle.throttled(session, email, addr, now):
            return Attempt(Result.THROTTLED)
    with context.store.session() as session:
        user = users.check_login(session, email, password, now)
        if user is not None:
            lifetime = sessions.Lifetime.from_config(context.config.web)
            secret, _ = sessions.start(session, user, addr, now, lifetime, previous)
            return Attempt(Result.OK, secret)
    with context.store.session() as session:
        throttle.record_failure(session, email, addr, now)
    return Attempt(Result.WRONG)


@router.post("/login")
async def login(request: Request, context: Context) -> Response:
    form = await request.form()
    email = str(form.get("email") or "")[:MAX_EMAIL]
    password = str(form.get("password") or "")
    token = str(form.get(csrf.FIELD) or "")
    next_path = safe_next(str(form.get("next") or ""))
    if not csrf.matches(request.cookies.get(csrf.LOGIN_COOKIE), token):
        raise PortalError(403, csrf.REFUSED)
    addr = remote_addr(request)
    if len(password) > MAX_PASSWORD:
        password = ""  # cannot be anyone's: a wrong login, without hashing a megabyte
    attempt = await run_in_threadpool(
        _attempt, context, email, password, addr, request.cookies.get(sessions.COOKIE)
    )
    if attempt.result is Result.THROTTLED:
        log.warning("portal login throttled from %s", addr)
        await asyncio.sleep(throttle.DELAY_SECONDS)
        response = _login_page(
            request, context, token, status=429, email=email, error=THROTTLED, next_path=next_path
        )
        response.headers["Retry-After"] = str(int(throttle.WINDOW.total_seconds()))
        return response
    if attempt.result is Result.WRONG:
        log.info("portal login failed from %s", addr)
        return _login_page(
            request, context, token, status=401, email=email, error=WRONG, next_path=next_path
        )
    response = RedirectResponse(next_path or "/", status_code=303)
    max_age = context.config.web.session_hours * 3600
    cookies.set_cookie(response, request, context, sessions.COOKIE, attempt.secret, max_age=max_age)
    cookies.delete_cookie(response, request, context, csrf.LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, user: FormUserDep, context: Context) -> Response:
    with context.store.session() as session:
        sessions.end(session, request.cookies.get(sessions.COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    cookies.delete_cookie(response, request, context, sessions.COOKIE)
    return response

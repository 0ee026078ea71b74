"""The customer portal: server-rendered pages in the API's application, usable without JavaScript.

:mod:`.sessions` keeps logins in ``web_sessions``, :mod:`.csrf` guards every
form, :mod:`.throttle` slows password guessing, :mod:`.headers` adds the
security headers to every response; :mod:`.auth` gives a page its logged-in
user, :mod:`.render` renders a template, :mod:`.flash` carries a message
across a redirect and :mod:`.errors` answers failures as pages. The pages
are in :mod:`.pages`, the templates in ``templates/``, the stylesheet in
``static/`` (docs/portal.rst).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from osfmilter.web.portal import errors
from osfmilter.web.portal.headers import SecurityHeaders
from osfmilter.web.portal.pages import (
    dashboard,
    domains,
    history,
    login,
    notifications,
    operator,
    refusals,
    reports,
    sasl,
    servers,
    tokens,
)
from osfmilter.web.portal.render import TEMPLATES

STATIC = TEMPLATES.parent / "static"
# Every page module, each with its ``router``: add a new one here (the tests
# check every POST route of these for CSRF, every {id} route for isolation).
PAGES = (
    login,
    dashboard,
    servers,
    sasl,
    tokens,
    notifications,
    domains,
    refusals,
    history,
    operator,
    reports,
)


def install(app: FastAPI) -> None:
    """The portal's pages, stylesheet, error pages and security headers, on the application."""
    errors.install(app)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for page in PAGES:
        app.include_router(page.router)

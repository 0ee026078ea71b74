"""Pages from the Jinja2 templates in ``templates/``: every value escaped, one base layout.

Autoescaping is on for every template, and nothing is marked safe: what a
customer typed (a description, a login) is text on the page, never markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from osfmilter.web.context import web_context
from osfmilter.web.portal import flash

if TYPE_CHECKING:
    from osfmilter.web.portal.auth import PortalUser

TEMPLATES = Path(__file__).parent / "templates"
# (path, label) of the navigation, in order. Add a page's link here.
NAV: list[tuple[str, str]] = [
    ("/", "Dashboard"),
    ("/servers", "Servers"),
    ("/sasl", "SASL accounts"),
    ("/tokens", "API tokens"),
    ("/domains", "Domains"),
    ("/refusals", "Refusals"),
    ("/history", "State history"),
    ("/notifications", "Notifications"),
]
# The operator's links, shown to operators only (anyone else gets a 404 there).
OPERATOR_NAV: list[tuple[str, str]] = [
    ("/operator", "Customers"),
    ("/operator/reports", "Reports"),
    ("/operator/audit", "Audit log"),
]


def when(moment: datetime | None) -> str:
    """A moment as people read it: ``2026-12-01 12:00 UTC``; ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(count: int | None) -> str:
    """Bytes in decimal units, as the plans state them: ``1.5 GB``."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["size"] = size
    return env


def nav_for(user: PortalUser | None) -> list[tuple[str, str]]:
    return NAV + OPERATOR_NAV if user is not None and user.is_operator else NAV


def current_nav(path: str) -> str:
    """The navigation entry a path belongs to: ``/servers/7/...`` is under ``/servers``."""
    best = "/"
    for href, _ in NAV + OPERATOR_NAV:
        if href != "/" and (path == href or path.startswith(href + "/")) and len(href) > len(best):
            best = href
    return best


def render(
    request: Request,
    template: str,
    user: PortalUser | None,
    /,
    *,
    status: int = 200,
    **values: object,
) -> HTMLResponse:
    """The page ``template`` for this request's user, with the one-time message it has waiting.

    ``values`` are the template's own; every page also gets ``user``,
    ``csrf_token`` (for its forms), ``nav``, ``current`` and ``flash``.
    """
    context = web_context(request)
    message = flash.take(request, user)
    html = (
        environment()
        .get_template(template)
        .render(
            user=user,
            csrf_token=user.csrf_token if user else "",
            nav=nav_for(user),
            current=current_nav(request.url.path),
            flash=message,
            **values,
        )
    )
    response = HTMLResponse(html, status_code=status)
    flash.clear(response, request, context)
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A failure as a page of its own, without the user's navigation (it may have no user)."""
    html = (
        environment()
        .get_template("error.html")
        .render(
            user=None,
            csrf_token="",
            nav=NAV,
            current="",
            flash=None,
            status=status,
            message=message,
        )
    )
    return HTMLResponse(html, status_code=status)

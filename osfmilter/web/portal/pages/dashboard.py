"""``/``: the dashboard."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from osfmilter.web.portal.auth import PageUserDep
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)


@router.get("/")
def dashboard(request: Request, user: PageUserDep) -> HTMLResponse:
    return render(request, "dashboard.html", user)

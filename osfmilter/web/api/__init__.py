"""The endpoints of ``/api/v1``, one module per kind of object."""

from fastapi import APIRouter

from osfmilter.web.api import servers

PREFIX = "/api/v1"


def router() -> APIRouter:
    """Every endpoint of the API, under :data:`PREFIX`."""
    api = APIRouter(prefix=PREFIX)
    api.include_router(servers.router)
    return api

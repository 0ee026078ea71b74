"""The endpoints of ``/api/v1``, one module per kind of object (:mod:`.common`: what they share)."""

from fastapi import APIRouter

from osfmilter.web.api import domains, events, sasl, servers, tokens, usage

PREFIX = "/api/v1"


def router() -> APIRouter:
    """Every endpoint of the API, under :data:`PREFIX`."""
    api = APIRouter(prefix=PREFIX)
    for module in (servers, sasl, domains, usage, events, tokens):
        api.include_router(module.router)
    return api

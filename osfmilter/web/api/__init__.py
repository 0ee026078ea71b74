"""The endpoints of ``/api/v1``, one module per kind of object (:mod:`.common`: what they share)."""

from fastapi import APIRouter

from osfmilter.web.api import (
    audit,
    customers,
    domains,
    events,
    identities,
    sasl,
    servers,
    tokens,
    usage,
)

PREFIX = "/api/v1"


def router() -> APIRouter:
    """Every endpoint of the API, under :data:`PREFIX`."""
    api = APIRouter(prefix=PREFIX)
    for module in (servers, sasl, domains, usage, events, tokens, customers, identities, audit):
        api.include_router(module.router)
    return api

"""The application factory: one FastAPI application per configuration, no global state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from osfmilter import __version__
from osfmilter.clock import Clock, SystemClock
from osfmilter.config import Config
from osfmilter.storage.db import Access, make_engine, prepare_schema
from osfmilter.storage.store import SqlStore
from osfmilter.web import api, errors, portal
from osfmilter.web.context import WebContext

OPENAPI_URL = f"{api.PREFIX}/openapi.json"


def create_app(config: Config, clock: Clock | None = None) -> FastAPI:
    """The API and the portal on the configured database (the embedded SQLite one is
    made and upgraded as the milter does; a shared PostgreSQL one must be at the
    schema's head)."""
    engine = make_engine(config.database_url, config.database.timeout, Access.CREATE)
    try:
        prepare_schema(engine, config.database_url)
    except BaseException:
        engine.dispose()
        raise
    context = WebContext(config, SqlStore(engine), clock or SystemClock())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="osfmilter API",
        version=__version__,
        description="Customers' SMTP servers on the hosted relay (docs/api.rst).",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = context
    errors.install(app)
    app.include_router(api.router())
    portal.install(app)
    if config.web.trusted_proxies:
        # Outermost: the headers and the pages see the client and the scheme
        # the proxy reports, and only a trusted proxy is believed.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.web.trusted_proxies))
    return app

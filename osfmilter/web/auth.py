"""``Authorization: Bearer osf_...`` to the caller it speaks for (osfmilter.tokens).

A missing, malformed, unknown, wrong or revoked token gets the same 401,
so an answer tells nothing about which tokens exist. The token itself is
never logged nor echoed.

Every request is throttled (:mod:`osfmilter.web.throttle`): one with a
valid token by its customer (however many tokens it makes), one without by
its client host. A host whose allowance of requests without a valid token
is used up gets 429 before its token is even looked at, so guessing tokens
from it stops too.

:class:`ApiGate` does both before the application reads the request's
body: a request without a valid token is answered 401 (or 429) whatever
its body, and never has a body of any size parsed on its behalf. The
:data:`CallerDep` dependency then hands the endpoint the caller the gate
found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from osfmilter import tokens
from osfmilter.storage.audit import Actor
from osfmilter.storage.schema import Customer
from osfmilter.web.clients import client_key
from osfmilter.web.context import WebContext
from osfmilter.web.errors import ApiError, error_response, too_many_requests

# auto_error=False: our own 401 with our own body; the scheme still documents
# the API's security in the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="an API token: osfmilter token create")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Whom a request speaks for: one customer (id and name), or the operator (None)."""

    token_id: int
    token_prefix: str
    customer_id: int | None
    customer_name: str | None
    # The peer's address (the proxy's forwarded one where it is trusted).
    remote_addr: str

    @property
    def is_operator(self) -> bool:
        return self.customer_id is None

    @property
    def actor(self) -> Actor:
        """Who the audit log names for this caller's changes."""
        return Actor(f"token:osf_{self.token_prefix}", "api", self.remote_addr)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, CHALLENGE)


def authenticate(header: str | None, address: str, context: WebContext) -> Caller:
    """The caller an ``Authorization`` header speaks for, throttled; else an ApiError."""
    host = client_key(address)
    throttle = context.throttle
    if (wait := throttle.addresses.wait(host)) > 0:
        raise too_many_requests(wait)
    scheme, _, credential = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        throttle.addresses.take(host)
        raise unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    with context.store.session() as session:
        principal = tokens.authenticate(session, credential.strip(), context.clock.now())
        name = None
        if principal is not None and principal.customer_id is not None:
            customer = session.get(Customer, principal.customer_id)
            # Removed since: its tokens went with it.
            name = None if customer is None else customer.name
    if principal is None or (principal.customer_id is not None and name is None):
        throttle.addresses.take(host)
        raise unauthorized("invalid or revoked token")
    # One allowance per customer: minting tokens does not multiply it.
    if (wait := throttle.callers.take(principal.customer_id)) > 0:
        raise too_many_requests(wait)
    return Caller(principal.token_id, principal.prefix, principal.customer_id, name, address)


class ApiGate:
    """ASGI middleware: each API request authenticated and throttled before its body is read.

    The OpenAPI document is public; every other path under the API's prefix,
    an unknown one included, needs a valid token.
    """

    def __init__(self, app: ASGIApp, context: WebContext, prefix: str, public: str) -> None:
        self.app = app
        self.context = context
        self.prefix = prefix.rstrip("/") + "/"
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix) or path == self.public:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        address = request.client.host if request.client else ""
        try:
            # The token lookup is a database read: off the event loop.
            found = await anyio.to_thread.run_sync(
                authenticate, request.headers.get("authorization"), address, self.context
            )
        except ApiError as refused:
            await error_response(refused)(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = found
        await self.app(scope, receive, send)


_STATE_KEY = "osfmilter_caller"


def caller(
    request: Request,
    # Not read (ApiGate has done that): it documents the scheme in the OpenAPI document.
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """FastAPI dependency: the caller :class:`ApiGate` authenticated."""
    found = request.scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(found, Caller):  # a route outside the gate's prefix: never served
        raise unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    return found


CallerDep = Annotated[Caller, Depends(caller)]

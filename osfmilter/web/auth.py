"""``Authorization: Bearer osf_...`` to the caller it speaks for (osfmilter.tokens).

A missing, malformed, unknown, wrong or revoked token gets the same 401,
so an answer tells nothing about which tokens exist. The token itself is
never logged nor echoed.

Every request is throttled (:mod:`osfmilter.web.throttle`): one with a
valid token by its token, one without by its address. An address whose
allowance of requests without a valid token is used up gets 429 before its
token is even looked at, so guessing tokens from it stops too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from osfmilter import tokens
from osfmilter.storage.audit import Actor
from osfmilter.storage.schema import Customer
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.errors import ApiError, too_many_requests

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


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[WebContext, Depends(web_context)],
) -> Caller:
    """FastAPI dependency: the authenticated caller, else a 401."""
    address = request.client.host if request.client else ""
    throttle = context.throttle
    if (wait := throttle.addresses.wait(address)) > 0:
        raise too_many_requests(wait)
    if credentials is None:
        throttle.addresses.take(address)
        raise unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    with context.store.session() as session:
        principal = tokens.authenticate(session, credentials.credentials, context.clock.now())
        name = None
        if principal is not None and principal.customer_id is not None:
            customer = session.get(Customer, principal.customer_id)
            # Removed since: its tokens went with it.
            name = None if customer is None else customer.name
    if principal is None or (principal.customer_id is not None and name is None):
        throttle.addresses.take(address)
        raise unauthorized("invalid or revoked token")
    if (wait := throttle.tokens.take(principal.token_id)) > 0:
        raise too_many_requests(wait)
    return Caller(principal.token_id, principal.prefix, principal.customer_id, name, address)


CallerDep = Annotated[Caller, Depends(caller)]

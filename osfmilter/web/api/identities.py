"""``/api/v1/identities/{kind}/{key}/release|block``: the operator changes a sender's state.

``kind`` is ``server`` (``key``: an address or network, as ``osfmilter
server release`` takes it: the registration that holds it) or ``sasl``
(``key``: the login). The rules and the history are the command line's
(:meth:`~osfmilter.storage.reputation.ReputationStore.operator`); ``by`` is
the operator the history names. Operator tokens only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from osfmilter.errors import UsageError
from osfmilter.model import IdentityKind
from osfmilter.reputation import OperatorActionKind
from osfmilter.storage import admin
from osfmilter.storage.reputation import MAX_ACTOR, MAX_REASON
from osfmilter.web import operations
from osfmilter.web.api.common import Context, OperatorDep, StateChangeOut, state_change
from osfmilter.web.auth import Caller
from osfmilter.web.context import WebContext
from osfmilter.web.errors import invalid, not_found

router = APIRouter(prefix="/identities", tags=["operator"])
IdentityKey = Annotated[str, Path(min_length=1, max_length=255)]


class StateChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=MAX_ACTOR, description="the operator, for the history")
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="why, for the history")


class IdentityStateOut(BaseModel):
    identity: str = Field(description='"server:NETWORK" or "sasl:LOGIN"')
    customer: str
    state: str
    state_changed_at: datetime
    changes: list[StateChangeOut] = Field(description="the transitions made; [] if none")


def _change(
    context: WebContext,
    caller: Caller,
    kind: IdentityKind,
    key: str,
    action: OperatorActionKind,
    body: StateChangeRequest,
) -> IdentityStateOut:
    with context.store.session() as session:
        try:
            if kind is IdentityKind.SERVER:
                server = admin.find_server(session, key)
                identity_id, name, customer = server.id, server.network, server.customer.name
            else:
                account = admin.get_sasl(session, key)
                identity_id, name, customer = account.id, account.login, account.customer.name
        except UsageError:
            raise not_found("identity") from None
    reputation = context.reputation
    try:
        changes = operations.change_state(
            reputation, caller.actor, kind, identity_id, action, body.by, body.reason
        )
    except UsageError as exc:  # the store's own rules on --by and --reason
        field = "reason" if str(exc).startswith("--reason") else "by"
        raise invalid(field, str(exc).removeprefix(f"--{field} ")) from None
    standing = reputation.standing(kind, identity_id)
    return IdentityStateOut(
        identity=f"{kind}:{name}",
        customer=customer,
        state=standing.state,
        state_changed_at=standing.changed_at,
        changes=[state_change(c) for c in changes],
    )


def _route(action: OperatorActionKind) -> None:
    def endpoint(
        kind: IdentityKind,
        key: IdentityKey,
        body: StateChangeRequest,
        caller: OperatorDep,
        context: Context,
    ) -> IdentityStateOut:
        return _change(context, caller, kind, key, action, body)

    endpoint.__name__ = f"{action}_identity"
    target = "veilig" if action is OperatorActionKind.RELEASE else "onveilig"
    router.add_api_route(
        f"/{{kind}}/{{key:path}}/{action}",
        endpoint,
        methods=["POST"],
        summary=f"make a server or SASL login {target}, as `osfmilter server {action}`",
    )


for _action in OperatorActionKind:
    _route(_action)

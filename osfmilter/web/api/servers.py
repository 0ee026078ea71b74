"""``/api/v1/servers``: a customer's SMTP servers, registered by the rules of the command line.

Registration goes through :func:`osfmilter.storage.admin.add_server` in a
locked transaction, as ``osfmilter server add`` does. A customer can never
register a non-global network (``[registration] allow_non_global`` is for
the operator's command line), one wider than the minimum prefix, or one
that meets any other registration, its own included. An id of another
customer's server is answered 404, exactly like a missing one.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from osfmilter.errors import InvalidInput
from osfmilter.model import IdentityKind
from osfmilter.storage.schema import SmtpServer
from osfmilter.web import operations
from osfmilter.web.api.common import (
    Context,
    CustomerQuery,
    ObjectId,
    StateChangeOut,
    history,
    owner,
    remove_visible,
    scoped,
    visible,
)
from osfmilter.web.auth import CallerDep
from osfmilter.web.errors import invalid

router = APIRouter(prefix="/servers", tags=["servers"])
MAX_DESCRIPTION = 200


class ServerCreate(BaseModel):
    """A network to register: one address or a CIDR network."""

    model_config = ConfigDict(extra="forbid")

    network: str = Field(max_length=64, examples=["198.51.100.7", "2001:db8:1::/48"])
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    # Operator tokens only: the customer to register it to.
    customer: str | None = Field(default=None, max_length=100)

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must be one line without control characters")
        return value.strip() or None


class ServerOut(BaseModel):
    id: int
    network: str = Field(description="canonical CIDR")
    state: str = Field(description="veilig, verdacht or onveilig")
    state_changed_at: datetime
    customer: str
    description: str | None
    created_at: datetime


def _out(server: SmtpServer) -> ServerOut:
    return ServerOut(
        id=server.id,
        network=server.network,
        state=server.state,
        state_changed_at=server.state_changed_at,
        customer=server.customer.name,
        description=server.description,
        created_at=server.created_at,
    )


@router.get("", summary="the caller's servers (an operator's: all, or ?customer=NAME)")
def list_servers(
    caller: CallerDep, context: Context, customer: CustomerQuery = None
) -> list[ServerOut]:
    with context.store.session() as session:
        query = select(SmtpServer).order_by(
            SmtpServer.family, SmtpServer.first_address, SmtpServer.prefix_len
        )
        query = scoped(query, SmtpServer.customer_id, session, caller, customer)
        return [_out(server) for server in session.scalars(query)]


@router.post("", status_code=201, summary="register a server")
def create_server(body: ServerCreate, caller: CallerDep, context: Context) -> ServerOut:
    # Locked, as `osfmilter server add`: no registration slips in between
    # the overlap check and the insert.
    with context.store.session(locked=True) as session:
        customer = owner(session, caller, body.customer)
        try:
            server = operations.add_server(
                session,
                caller.actor,
                customer,
                body.network,
                body.description,
                context.config.registration,
                context.clock.now(),
                by_operator=caller.is_operator,
            )
        except InvalidInput as exc:
            raise invalid("network", exc.public) from None
        # A ConflictError (409) goes to the error handler, naming no other customer.
        return _out(server)


@router.get("/{server_id}", summary="one server")
def get_server(server_id: ObjectId, caller: CallerDep, context: Context) -> ServerOut:
    with context.store.session() as session:
        return _out(visible(session, caller, server_id, "server", operations.visible_server))


@router.delete("/{server_id}", status_code=204, summary="remove a server")
def delete_server(server_id: ObjectId, caller: CallerDep, context: Context) -> Response:
    return remove_visible(
        context, caller, server_id, "server", operations.visible_server, operations.remove_server
    )


@router.get("/{server_id}/history", summary="the server's state changes, oldest first")
def server_history(
    server_id: ObjectId, caller: CallerDep, context: Context
) -> list[StateChangeOut]:
    return history(context, caller, IdentityKind.SERVER, server_id)

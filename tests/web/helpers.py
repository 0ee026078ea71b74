"""What the endpoint tests share: a created object, the audit log as rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from osfmilter.storage.schema import AuditEntry, Event
from tests.web.conftest import Api


def created(api: Api, path: str, headers: dict[str, str], **body: object) -> dict[str, Any]:
    """POST a body; the 201's JSON."""
    response = api.client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def actor(headers: dict[str, str]) -> str:
    """The audit log's name for the token in these headers: token:osf_PREFIX."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return "token:osf_" + token.removeprefix("osf_").partition("_")[0]


def audited(api: Api) -> list[tuple[str, str, str, str, str]]:
    """(actor, via, customer, action, target) of every entry, oldest first."""
    with api.store.session() as session:
        return [
            (e.actor, e.via, e.customer, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def error_of(response: Any, status: int) -> str:
    """The error text of an answer that must have this status and only ``error``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    text: str = body["error"]
    return text


def event(customer_id: int, at: datetime, **fields: Any) -> Event:
    """An event row of the customer's: an accepted message unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "node": "relay1",
        "queue_id": "Q0",
        "stage": "mail",
        "client_ip": "81.2.69.7",
        "identity": "",
        "envelope_sender": "a@acme.example",
        "header_from_domain": "acme.example",
        "rcpt_count": 1,
        "size": 100,
        "action": "accept",
        "reason": "ok",
        "smtp_code": None,
        "enhanced_code": "",
    }
    return Event(at=at, customer_id=customer_id, **{**values, **fields})

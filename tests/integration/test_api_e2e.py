"""A server registered through the API relays at its next message; deleted, it is refused.

The API (its TestClient) and the milter behind a real Postfix share the
relay's database, on SQLite and PostgreSQL; nothing is restarted in
between: the registry version tells the milter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from osfmilter.config import load_config
from osfmilter.web import create_app
from tests.harness.smtpclient import Result, make_message, send
from tests.integration.conftest import BACKENDS, Relay, message_id, relay_on

pytestmark = pytest.mark.integration

# Global unicast, as the API demands of a customer's server; it is only ever
# named in XCLIENT on loopback.
SERVER = "81.2.69.10"
SENDER = "news@acme.example"
RECIPIENT = "bob@example.org"


@pytest.fixture(scope="module", params=BACKENDS)
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    with relay_on(request, "osf-api") as relay:
        relay.register("acme", domains=("acme.example",))
        yield relay


@pytest.fixture(scope="module")
def api(relay: Relay) -> Iterator[tuple[TestClient, dict[str, str]]]:
    status, out, err = relay.cli_output("token", "create", "--customer", "acme")
    assert status == 0, (out, err)
    [token] = re.findall(r"^token: (osf_\S+)$", out, re.MULTILINE)
    with TestClient(create_app(load_config(relay.milter.config_path))) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def send_from_server(relay: Relay, subject: str) -> tuple[Result, bytes]:
    data = make_message(SENDER, [RECIPIENT], subject, "Hello.\r\n")
    return send(relay.port, SENDER, [RECIPIENT], data, client_addr=SERVER), data


def test_a_server_added_through_the_api_relays_and_deleted_is_refused(
    relay: Relay, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = api
    before, _ = send_from_server(relay, "before")
    assert before.mail is not None and before.mail.code == 550, before.mail

    created = client.post("/api/v1/servers", json={"network": SERVER}, headers=headers)
    assert created.status_code == 201, created.text
    accepted, data = send_from_server(relay, "registered")
    assert accepted.data is not None and accepted.data.code == 250, accepted
    relay.sink.wait_for_message_id(message_id(data))
    [event] = relay.events(action="accept")
    assert event.identity == f"server:{SERVER}/32"

    deleted = client.delete(f"/api/v1/servers/{created.json()['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    after, _ = send_from_server(relay, "after")
    assert after.mail is not None
    assert (after.mail.code, after.mail.text.split(" ", 1)[0]) == (550, "5.7.1"), after.mail
    assert f"relay not permitted for {SERVER}" in after.mail.text

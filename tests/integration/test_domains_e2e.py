"""Domains through a real Postfix, on SQLite and PostgreSQL: another customer's is refused.

Customer acme sends from its registered server; beta owns beta.example.
Every answer is the one acme's MTA sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.smtpclient import Reply, make_message, send
from tests.integration.conftest import BACKENDS, Relay, message_id, relay_on

pytestmark = pytest.mark.integration

ACME_SERVER = "192.0.2.10"
BETA_SERVER = "198.51.100.10"


@pytest.fixture(scope="module", params=BACKENDS)
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    with relay_on(request, "osf-domains") as relay:
        relay.register("acme", domains=("acme.example",), servers=(ACME_SERVER,))
        relay.register("beta", domains=("beta.example",), servers=(BETA_SERVER,))
        yield relay


def assert_reply(reply: Reply | None, code: int, enhanced_code: str) -> None:
    assert reply is not None
    assert (reply.code, reply.text.split(" ", 1)[0]) == (code, enhanced_code), str(reply)


def test_an_envelope_sender_in_another_customers_domain_is_550_at_mail(relay: Relay) -> None:
    result = send(
        relay.port,
        "news@mail.beta.example",
        ["bob@example.org"],
        make_message("news@acme.example", ["bob@example.org"], "x", "Hello.\r\n"),
        client_addr=ACME_SERVER,
    )
    assert_reply(result.mail, 550, "5.7.1")
    assert "mail.beta.example is registered to another customer" in result.mail.text
    assert "add it to your own account" in result.mail.text
    [event] = relay.events(reason="foreign_sender")
    assert (event.stage, event.action, event.checks.split(",")[-1]) == (
        "mail",
        "reject",
        "sender_domain",
    )


def test_a_from_header_in_another_customers_domain_is_550_at_the_end(relay: Relay) -> None:
    data = make_message("Beta News <news@beta.example>", ["bob@example.org"], "x", "Hello.\r\n")
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], data, client_addr=ACME_SERVER
    )
    assert result.mail.code == 250
    assert_reply(result.data, 550, "5.7.1")
    assert result.data is not None and "From: domain beta.example" in result.data.text
    assert relay.sink.count_message_id(message_id(data)) == 0
    [event] = relay.events(reason="foreign_from")
    assert (event.stage, event.header_from_domain) == ("eom", "beta.example")


def test_the_owner_itself_sends_as_its_domain(relay: Relay) -> None:
    data = make_message("news@beta.example", ["bob@example.org"], "own", "Hello.\r\n")
    result = send(
        relay.port, "news@beta.example", ["bob@example.org"], data, client_addr=BETA_SERVER
    )
    assert result.data is not None and result.data.code == 250, result
    relay.sink.wait_for_message_id(message_id(data))


def test_a_domain_of_nobody_is_accepted_as_an_unknown_sender(relay: Relay) -> None:
    data = make_message("x@nobody.example", ["r1@example.org"], "unknown", "Hello.\r\n")
    six = [f"r{i}@example.org" for i in range(1, 7)]
    result = send(relay.port, "x@nobody.example", six, data, client_addr=ACME_SERVER)
    # The unknown senders' limit: five recipients per message.
    assert [r.code for r in result.rcpt] == [250] * 5 + [452]
    assert result.data is not None and result.data.code == 250, result
    relay.sink.wait_for_message_id(message_id(data))


def test_report_refused_lists_the_foreign_domain_refusals(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_message("x@beta.example", ["bob@example.org"], "x", "Hello.\r\n")
    send(relay.port, "x@beta.example", ["bob@example.org"], data, client_addr=ACME_SERVER)
    capsys.readouterr()
    assert relay.cli("report", "refused") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "foreign_sender" in line]
    assert lines and "acme" in lines[0], lines

"""Mail through a real Postfix into the real milter process and out to a sink.

Every answer is asserted with its basic and enhanced code, as the customer's
MTA sees it. Client addresses and SASL logins are presented with XCLIENT.
"""

from __future__ import annotations

import re

import pytest

from tests.harness.smtpclient import Reply, make_message, send
from tests.integration.conftest import Relay, message_id

pytestmark = pytest.mark.integration

FREE_SERVER = "192.0.2.10"
FREE_V6_SERVER = "2001:db8:5::10"


@pytest.fixture(scope="module", autouse=True)
def customers(relay: Relay) -> None:
    relay.register(
        "acme",
        "free",
        domains=("acme.example",),
        servers=(FREE_SERVER, "2001:db8:5::/64"),
        logins=("alice",),
    )


def assert_reply(reply: Reply | None, code: int, enhanced_code: str) -> None:
    assert reply is not None
    assert (reply.code, reply.text.split(" ", 1)[0]) == (code, enhanced_code), str(reply)


def message(
    sender: str = "news@acme.example",
    rcpts: tuple[str, ...] = ("bob@example.org",),
    **kwargs: object,
) -> bytes:
    return make_message(sender, list(rcpts), "test", "Hello.\r\n", **kwargs)  # type: ignore[arg-type]


def test_unregistered_client_is_refused_at_mail_with_a_hint(relay: Relay) -> None:
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], message(), client_addr="198.51.100.77"
    )
    assert_reply(result.mail, 550, "5.7.1")
    assert "198.51.100.77" in result.mail.text and "SMTP servers > Add" in result.mail.text
    [event] = relay.events(client_ip="198.51.100.77")
    assert (event.action, event.reason, event.smtp_code) == ("reject", "relay_denied", 550)


def test_registered_ipv4_server_is_delivered_and_logged_with_the_queue_id(relay: Relay) -> None:
    data = message()
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], data, client_addr=FREE_SERVER
    )
    assert result.accepted, result
    [delivered] = relay.sink.wait_for_message_id(message_id(data))
    assert delivered.rcpt_tos == ("bob@example.org",)
    queue_id = re.search(r"queued as (\w+)", result.data.text if result.data else "")
    assert queue_id, result.data
    [event] = relay.events(queue_id=queue_id.group(1))
    assert (event.action, event.identity, event.header_from_domain) == (
        "accept",
        "server:192.0.2.10/32",
        "acme.example",
    )
    lines = [ln for ln in relay.milter.decision_lines() if f"qid={queue_id.group(1)}" in ln]
    assert len(lines) == 1 and "action=accept" in lines[0]
    # The same id stands in Postfix's own log, so an operator can follow it.
    assert queue_id.group(1) in relay.postfix.maillog()
    # The shipped contrib/postfix/main.cf is what this Postfix runs, and it knows every key.
    assert "unused parameter" not in relay.postfix.maillog()


def test_registered_ipv6_server_is_delivered(relay: Relay) -> None:
    data = message()
    result = send(
        relay.port,
        "news@acme.example",
        ["bob@example.org"],
        data,
        client_addr=f"IPV6:{FREE_V6_SERVER}",
    )
    assert result.accepted, result
    relay.sink.wait_for_message_id(message_id(data))
    assert relay.events(client_ip=FREE_V6_SERVER)[-1].identity == "server:2001:db8:5::/64"


def test_sasl_login_from_an_unregistered_address_is_delivered(relay: Relay) -> None:
    data = message()
    result = send(
        relay.port,
        "news@acme.example",
        ["bob@example.org"],
        data,
        client_addr="203.0.113.9",
        login="alice",
    )
    assert result.accepted, result
    relay.sink.wait_for_message_id(message_id(data))
    assert relay.events(client_ip="203.0.113.9")[-1].identity == "sasl:alice"


def test_unregistered_sasl_login_is_refused(relay: Relay) -> None:
    result = send(
        relay.port,
        "news@acme.example",
        ["bob@example.org"],
        message(),
        client_addr="203.0.113.10",
        login="mallory",
    )
    assert_reply(result.mail, 550, "5.7.1")


def test_declared_size_over_the_limit_is_552_at_mail(relay: Relay) -> None:
    result = send(
        relay.port,
        "news@acme.example",
        ["bob@example.org"],
        message(),
        client_addr=FREE_SERVER,
        size=52_428_801,
    )
    assert_reply(result.mail, 552, "5.3.4")


def test_streamed_size_over_the_limit_is_552_at_end_of_data(relay: Relay) -> None:
    data = message(size=52_428_801)
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], data, client_addr=FREE_SERVER
    )
    assert_reply(result.data, 552, "5.3.4")
    assert relay.sink.count_message_id(message_id(data)) == 0


def test_51st_recipient_of_a_free_known_sender_is_452_and_the_first_50_are_delivered(
    relay: Relay,
) -> None:
    rcpts = [f"user{i}@example.org" for i in range(51)]
    data = message(rcpts=tuple(rcpts[:3]))
    result = send(relay.port, "news@acme.example", rcpts, data, client_addr=FREE_SERVER)
    assert all(r.code == 250 for r in result.rcpt[:50]), result.rcpt[:50]
    assert_reply(result.rcpt[50], 452, "4.5.3")
    assert result.accepted
    delivered = relay.sink.wait_for(
        lambda msgs: sum(len(m.rcpt_tos) for m in msgs if m.message_id == message_id(data)) >= 50
    )
    got = sorted(r for m in delivered if m.message_id == message_id(data) for r in m.rcpt_tos)
    assert got == sorted(rcpts[:50])


def test_6th_recipient_of_an_unknown_sender_is_452(relay: Relay) -> None:
    rcpts = [f"user{i}@example.org" for i in range(6)]
    data = message(sender="someone@elsewhere.example")
    result = send(relay.port, "someone@elsewhere.example", rcpts, data, client_addr=FREE_SERVER)
    assert all(r.code == 250 for r in result.rcpt[:5])
    assert_reply(result.rcpt[5], 452, "4.5.3")
    assert result.accepted


def test_unknown_header_from_with_too_many_recipients_is_452_for_the_message(
    relay: Relay,
) -> None:
    rcpts = [f"user{i}@example.org" for i in range(6)]
    data = message(sender="ceo@elsewhere.example")
    result = send(relay.port, "news@acme.example", rcpts, data, client_addr=FREE_SERVER)
    assert all(r.code == 250 for r in result.rcpt)
    assert_reply(result.data, 452, "4.5.3")
    assert relay.sink.count_message_id(message_id(data)) == 0


def test_forged_trust_headers_change_nothing_and_ours_replace_forgeries(relay: Relay) -> None:
    data = message(
        extra_headers={
            "X-Osfmilter": "node=evil; virus=clean; spam=-100",
            "X-Spam-Status": "No, score=-100.0",
            "Authentication-Results": "relay.example; spf=pass",
        }
    )
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], data, client_addr=FREE_SERVER
    )
    assert result.accepted, result
    [delivered] = relay.sink.wait_for_message_id(message_id(data))
    stamps = delivered.headers("X-Osfmilter")
    assert len(stamps) == 1 and stamps[0].startswith("node=test-node; qid=")
    assert "evil" not in delivered.data.decode(errors="replace")


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("IPV6:::ffff:192.0.2.10", True),  # IPv4-mapped: the registered IPv4 host
        ("IPV6:::ffff:198.51.100.77", False),  # IPv4-mapped form of a stranger
        ("IPV6:64:ff9b::c000:20a", False),  # NAT64 of 192.0.2.10: another host
        ("IPV6:2002:c000:20a::1", False),  # 6to4 of 192.0.2.10: another host
        ("IPV6:2001:db8:5:0:ffff:ffff:ffff:ffff", True),  # last address of the /64
        ("IPV6:2001:db8:5:1::", False),  # first address past it
        ("192.0.2.11", False),  # the neighbour of a /32
    ],
)
def test_address_matching_through_postfix(relay: Relay, client: str, allowed: bool) -> None:
    result = send(
        relay.port, "news@acme.example", ["bob@example.org"], message(), client_addr=client
    )
    if allowed:
        assert result.accepted, result
    else:
        assert_reply(result.mail, 550, "5.7.1")


def test_percent_and_hostile_text_reach_the_reply_safely(relay: Relay) -> None:
    result = send(
        relay.port,
        "100%evil%%s@acme.example",
        ["bob@example.org"],
        message(),
        client_addr="198.51.100.88",
        helo="%s%n.example",
    )
    assert_reply(result.mail, 550, "5.7.1")
    assert "\r" not in result.mail.text and "198.51.100.88" in result.mail.text

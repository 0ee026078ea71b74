"""SPF through a real Postfix: the milter asks a DNS server the test runs on loopback."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.dnsserver import DnsServer
from tests.harness.smtpclient import Client, Result, make_message, send
from tests.harness.spfzone import (
    EMPTY_LABEL,
    INCLUDE,
    LABEL_64,
    NAME_OVER_253,
    RELAY_V4,
    RELAY_V6,
    SILENT,
    ZONE,
)
from tests.integration.conftest import Relay, message_id, running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.40"
TIMEOUT = 2


@pytest.fixture(scope="module")
def spf_relay() -> Iterator[Relay]:
    scratch = Path(tempfile.mkdtemp(prefix="osfspf-", dir="/tmp"))
    try:
        with DnsServer(ZONE, silent=SILENT) as dns:
            config = (
                f'[spf]\noutbound_ips = ["{RELAY_V4}", "{RELAY_V6}"]\n'
                f'include = "{INCLUDE}"\nnameservers = ["{dns.nameserver}"]\n'
                f"timeout = {TIMEOUT}\n"
            )
            with running_relay(
                f"sqlite:///{scratch}/spf.sqlite3", milter_config=config, name="osf-spf"
            ) as relay:
                relay.register(
                    "spfco",
                    "free",
                    servers=(SERVER,),
                    domains=(
                        "pass.example",
                        "fail.example",
                        "soft.example",
                        "silent.example",
                        "toomany.example",
                    ),
                )
                yield relay
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def deliver(relay: Relay, domain: str) -> tuple[bytes, Result]:
    sender = f"news@{domain}"
    data = make_message(sender, ["bob@example.org"], f"spf {domain}", "Hello.\r\n")
    return data, send(relay.port, sender, ["bob@example.org"], data, client_addr=SERVER)


def test_domain_that_includes_the_relay_is_delivered(spf_relay: Relay) -> None:
    data, result = deliver(spf_relay, "pass.example")
    assert result.accepted, result
    spf_relay.sink.wait_for_message_id(message_id(data))
    assert spf_relay.events(reason="accepted")[-1].spf_result == "pass"


def test_domain_that_excludes_the_relay_is_550_5_7_23(spf_relay: Relay) -> None:
    _, result = deliver(spf_relay, "fail.example")
    assert (result.mail.code, result.mail.text.split(" ", 1)[0]) == (550, "5.7.23")
    assert f"include:{INCLUDE}" in result.mail.text
    assert spf_relay.events(reason="spf_fail")[-1].spf_result == "fail"


def test_softfail_is_delivered_and_recorded(spf_relay: Relay) -> None:
    data, result = deliver(spf_relay, "soft.example")
    assert result.accepted, result
    spf_relay.sink.wait_for_message_id(message_id(data))
    assert spf_relay.events(header_from_domain="soft.example")[-1].spf_result == "softfail"


def test_permerror_is_recorded_and_accepted_with_a_log_line(spf_relay: Relay) -> None:
    _, result = deliver(spf_relay, "toomany.example")
    assert result.accepted, result
    assert spf_relay.events(header_from_domain="toomany.example")[-1].spf_result == "permerror"
    assert "SPF permerror for toomany.example" in spf_relay.milter.log()


def test_control_characters_of_a_record_are_escaped_in_the_log(spf_relay: Relay) -> None:
    _, result = deliver(spf_relay, "ctl.example")
    assert result.accepted, result
    log = spf_relay.milter.log()
    [line] = [line for line in log.split("\n") if "SPF permerror for ctl.example" in line]
    assert line.endswith("Unknown mechanism found: \\x1b[31mred\\rx\\x7f"), line
    assert line.isprintable()


def test_silent_nameserver_is_451_4_7_24_within_the_timeout(spf_relay: Relay) -> None:
    started = time.monotonic()
    _, result = deliver(spf_relay, "silent.example")
    assert (result.mail.code, result.mail.text.split(" ", 1)[0]) == (451, "4.7.24")
    assert time.monotonic() - started < TIMEOUT + 3


def test_a_quoted_local_part_with_an_at_sign_cannot_switch_off_a_fail(spf_relay: Relay) -> None:
    """pyspf alone looked up 'y"@quoted.example' and cached "none" for quoted.example
    (a domain like fail.example, not yet in the milter's cache)."""
    replies = []
    for path in ('<"x@y"@quoted.example>', "<news@quoted.example>"):
        with Client() as client:
            client.connect(spf_relay.port)
            assert client.xclient(addr=SERVER).code == 220
            # Raw: smtplib would rewrite the quoted local part.
            code, text = client.smtp.docmd("MAIL", f"FROM:{path}")
            replies.append((code, text.decode().split(" ", 1)[0]))
    assert replies == [(550, "5.7.23")] * 2


@pytest.mark.parametrize(
    "domain",
    [LABEL_64, NAME_OVER_253, EMPTY_LABEL],
    ids=["label-64", "name-over-253", "empty-label"],
)
def test_a_helo_that_cannot_be_a_dns_name_is_recorded_as_none(
    spf_relay: Relay, domain: str
) -> None:
    """Not 451 4.3.0 with a traceback (for ever): SPF "none" (RFC 7208 4.3), delivered.

    Postfix refuses such a domain in MAIL FROM (501 5.1.7) but not as the
    HELO name, which is what SPF evaluates for the null sender.
    """
    recipient = f"bounce-{len(domain)}@example.org"
    data = make_message("mailer-daemon@example.org", [recipient], "no DNS name", "Hello.\r\n")
    with Client() as client:
        client.connect(spf_relay.port)
        assert client.xclient(addr=SERVER).code == 220
        assert client.ehlo(domain).code == 250  # XCLIENT HELO= takes at most 255 octets
        assert client.mail("").code == 250
        assert client.rcpt(recipient).code == 250
        reply = client.data(data)
    queue_id = re.search(r"^2.0.0 Ok: queued as (\w+)", reply.text)
    assert queue_id is not None, reply
    [event] = spf_relay.events(queue_id=queue_id.group(1))
    assert (event.reason, event.spf_result) == ("accepted", "none")
    assert "Traceback" not in spf_relay.milter.log()

"""Virus and spam scanning through a real Postfix with real clamd, spamd and rspamd.

clamd runs on a signature database the tests generate; spamd and rspamd run
offline (no DNS, no network rules). Faults are real too: clamd is stopped or
frozen under the running relay.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select

from osfmilter.config import config_from_dict
from osfmilter.probes import probe_all
from osfmilter.scanners import ScannerError
from osfmilter.scanners.rspamd import RspamdScanner
from osfmilter.storage.schema import SmtpServer, StateChange
from tests.harness.clamd import EICAR, ClamdProcess
from tests.harness.rspamd import RspamdProcess
from tests.harness.smtpclient import Reply, Result, make_message, send
from tests.harness.spamd import GTUBE, SpamdProcess
from tests.integration.conftest import Relay, message_id, running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.30"
SCAN_TIMEOUT = 5


@pytest.fixture(scope="module")
def scanning_relay(scratch: Path, clamd: ClamdProcess, spamd: SpamdProcess) -> Iterator[Relay]:
    config = (
        f'[clamav]\naddress = "{clamd.socket_path}"\ntimeout = {SCAN_TIMEOUT}\n'
        f'[spam]\nbackend = "spamassassin"\naddress = "{spamd.address}"\ntimeout = 20\n'
        "reject_score = 10.0\n"
    )
    with running_relay(f"sqlite:///{scratch}/scan.sqlite3", milter_config=config) as relay:
        relay.register("scanned", "free", domains=("scanned.example",), servers=(SERVER,))
        yield relay


def assert_reply(reply: Reply | None, code: int, enhanced_code: str) -> None:
    assert reply is not None
    assert (reply.code, reply.text.split(" ", 1)[0]) == (code, enhanced_code), str(reply)


def eicar_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = "news@scanned.example"
    message["To"] = "bob@example.org"
    message["Subject"] = "the report"
    message["Message-ID"] = make_msgid(domain="scanned.example")
    message.set_content("See the attachment.\n")
    message.add_attachment(
        EICAR, maintype="application", subtype="octet-stream", filename="report.com"
    )
    data = message.as_bytes().replace(b"\n", b"\r\n")
    assert base64.b64encode(EICAR) in data.replace(b"\r\n", b"")  # really base64-wrapped
    return data


def relay_send(relay: Relay, data: bytes) -> tuple[str, object]:
    result = send(relay.port, "news@scanned.example", ["bob@example.org"], data, client_addr=SERVER)
    return message_id(data), result


def test_eicar_attachment_is_554_naming_the_signature(scanning_relay: Relay) -> None:
    data = eicar_attachment()
    result = send(
        scanning_relay.port, "news@scanned.example", ["bob@example.org"], data, client_addr=SERVER
    )
    assert_reply(result.data, 554, "5.7.1")
    assert result.data is not None and "Osf.Test.EICAR" in result.data.text
    [event] = scanning_relay.events(reason="virus")
    assert event.virus_name.startswith("Osf.Test.EICAR")
    assert scanning_relay.sink.count_message_id(message_id(data)) == 0


def test_clean_message_is_delivered_with_its_spam_score(scanning_relay: Relay) -> None:
    data = make_message(
        "news@scanned.example",
        ["bob@example.org"],
        "lunch",
        "Shall we have lunch tomorrow at noon?\r\n",
    )
    result = send(
        scanning_relay.port, "news@scanned.example", ["bob@example.org"], data, client_addr=SERVER
    )
    assert result.accepted, result
    scanning_relay.sink.wait_for_message_id(message_id(data))
    event = scanning_relay.events(reason="accepted")[-1]
    assert event.spam_score is not None and event.spam_score < 10 and event.virus_name == ""


def test_gtube_is_550(scanning_relay: Relay) -> None:
    data = make_message(
        "news@scanned.example", ["bob@example.org"], "offer", GTUBE.decode() + "\r\n"
    )
    result = send(
        scanning_relay.port, "news@scanned.example", ["bob@example.org"], data, client_addr=SERVER
    )
    assert_reply(result.data, 550, "5.7.1")
    [event] = scanning_relay.events(reason="spam")
    assert event.spam_score is not None and event.spam_score >= 1000
    assert "GTUBE" in event.spam_rules


def test_clamd_frozen_is_451_within_the_timeout(scanning_relay: Relay, clamd: ClamdProcess) -> None:
    data = make_message("news@scanned.example", ["bob@example.org"], "frozen", "Hi.\r\n")
    clamd.pause()
    try:
        started = time.monotonic()
        result = send(
            scanning_relay.port,
            "news@scanned.example",
            ["bob@example.org"],
            data,
            client_addr=SERVER,
        )
        elapsed = time.monotonic() - started
    finally:
        clamd.resume()
    assert_reply(result.data, 451, "4.7.1")
    assert elapsed < SCAN_TIMEOUT + 5, elapsed  # bounded by the scanner timeout, not by clamd
    assert scanning_relay.sink.count_message_id(message_id(data)) == 0


def test_clamd_stopped_is_451_and_the_message_is_delivered_after_it_is_back(
    scanning_relay: Relay, clamd: ClamdProcess
) -> None:
    data = make_message("news@scanned.example", ["bob@example.org"], "retry me", "Hi.\r\n")
    clamd.stop()
    try:
        result = send(
            scanning_relay.port,
            "news@scanned.example",
            ["bob@example.org"],
            data,
            client_addr=SERVER,
        )
        assert_reply(result.data, 451, "4.7.1")
        assert "clamav" in result.data.text if result.data else False
    finally:
        clamd.start()
    again = send(
        scanning_relay.port, "news@scanned.example", ["bob@example.org"], data, client_addr=SERVER
    )
    assert again.accepted, again
    assert len(scanning_relay.sink.wait_for_message_id(message_id(data))) == 1
    # The outage was logged once, and its end.
    log = scanning_relay.milter.log()
    assert log.count("clamav failed") == 1 and "clamav is answering again" in log


# rspamd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rspamd(scratch: Path) -> Iterator[RspamdProcess]:
    with RspamdProcess(scratch / "rspamd") as process:
        yield process


@pytest.fixture(scope="module")
def rspamd_relay(scratch: Path, rspamd: RspamdProcess) -> Iterator[Relay]:
    config = f'[spam]\nbackend = "rspamd"\naddress = "{rspamd.url}"\nreject_score = 15.0\n'
    with running_relay(
        f"sqlite:///{scratch}/rspamd.sqlite3", milter_config=config, name="osf-rspamd"
    ) as relay:
        relay.register("scanned", "free", domains=("scanned.example",), logins=("carol",))
        yield relay


def test_health_probes_rspamd_by_its_ping(rspamd: RspamdProcess) -> None:
    config = config_from_dict({"spam": {"backend": "rspamd", "address": rspamd.url}})
    [spam] = [p for p in probe_all(config, timeout=5) if p.backend == "rspamd"]
    assert spam.state == "up", spam.detail
    # A path where no worker answers /ping: an HTTP answer, but not rspamd's.
    with pytest.raises(ScannerError, match="unexpected answer to /ping"):
        RspamdScanner(f"{rspamd.url}/nothing").ping(5)


def test_rspamd_rejects_gtube_and_passes_ham(rspamd_relay: Relay) -> None:
    spam = make_message(
        "news@scanned.example", ["bob@example.org"], "offer", GTUBE.decode() + "\r\n"
    )
    result = send(
        rspamd_relay.port,
        "news@scanned.example",
        ["bob@example.org"],
        spam,
        client_addr="203.0.113.40",
        login="carol",
    )
    assert_reply(result.data, 550, "5.7.1")
    ham = make_message(
        "news@scanned.example",
        ["bob@example.org"],
        "lunch",
        "Shall we have lunch tomorrow at noon?\r\n",
    )
    result = send(
        rspamd_relay.port,
        "news@scanned.example",
        ["bob@example.org"],
        ham,
        client_addr="203.0.113.40",
        login="carol",
    )
    assert result.accepted, result
    event = rspamd_relay.events(reason="accepted")[-1]
    assert event.spam_score is not None and event.spam_score < 15


# The reputation, end to end ---------------------------------------------------------------

SUSPECT = "192.0.2.31"


def server_state(relay: Relay, network: str) -> str:
    with relay.store.session() as session:
        return str(
            session.scalars(select(SmtpServer.state).where(SmtpServer.network == network)).one()
        )


def test_spam_makes_a_server_verdacht_then_time_heals_and_operators_block_and_release(
    scanning_relay: Relay,
) -> None:
    relay = scanning_relay
    relay.register("suspect", "paid", domains=("suspect.example",), servers=(SUSPECT,))

    def deliver(subject: str, body: str = "Hello.\r\n") -> Result:
        data = make_message("news@suspect.example", ["bob@example.org"], subject, body)
        return send(
            relay.port, "news@suspect.example", ["bob@example.org"], data, client_addr=SUSPECT
        )

    assert_reply(deliver("offer", GTUBE.decode() + "\r\n").data, 550, "5.7.1")
    assert server_state(relay, f"{SUSPECT}/32") == "verdacht"
    # verdacht: 10 per 5 minutes, whatever the (paid) plan.
    for i in range(10):
        assert deliver(f"after spam {i}").accepted
    refused = deliver("eleventh")
    assert_reply(refused.mail, 451, "4.7.1")
    assert "verdacht" in refused.mail.text

    relay.age_rate_windows(301)
    relay.age_reputation(timedelta(hours=48, seconds=1))
    assert deliver("healed").accepted
    assert server_state(relay, f"{SUSPECT}/32") == "veilig"
    assert relay.cli("server", "history", SUSPECT) == 0

    assert relay.cli("server", "block", SUSPECT, "--by", "ops", "--reason", "open relay") == 0
    blocked = deliver("blocked")
    assert_reply(blocked.mail, 554, "5.7.1")
    assert relay.cli("server", "release", SUSPECT, "--by", "ops", "--reason", "fixed") == 0
    assert deliver("released").accepted
    with relay.store.session() as session:
        history = session.execute(
            select(StateChange.old_state, StateChange.new_state, StateChange.actor)
            .join(SmtpServer, StateChange.smtp_server_id == SmtpServer.id)
            .where(SmtpServer.network == f"{SUSPECT}/32")
            .order_by(StateChange.at, StateChange.id)
        ).all()
    assert [tuple(row) for row in history] == [
        ("veilig", "verdacht", "system"),
        ("verdacht", "veilig", "system"),
        ("veilig", "onveilig", "ops"),
        ("onveilig", "veilig", "ops"),
    ]

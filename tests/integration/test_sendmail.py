"""A real Sendmail 8.17 in front of a real ``osfmilter run``, built from contrib/sendmail.

The Postfix tests (test_end_to_end.py) and the miltertest scripts
(test_miltertest.py) check the milter's answers; these check that they reach
a Sendmail client as intended through the shipped ``osfmilter.mc``: mail from
a registered server relayed to the sink, an unregistered client refused at
MAIL FROM (Sendmail puts ``<sender>... `` before the milter's text), and the
recipient limit answered per recipient. Sendmail has no XCLIENT, so the
client's address is the loopback address the test connects from.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from osfmilter.config import Config
from osfmilter.storage.db import make_engine
from tests.harness.database import register_customer, reset_database
from tests.harness.milter import MilterProcess
from tests.harness.sendmail import SENDMAIL_BINARY, SendmailInstance
from tests.harness.sink import Sink
from tests.harness.smtpclient import Reply, make_message, send
from tests.integration.conftest import message_id

pytestmark = pytest.mark.integration

CUSTOMER = "sm-customer"
DOMAIN = "sm-customer.example"
SENDER = f"office@{DOMAIN}"
REGISTERED = "127.0.0.2"
UNREGISTERED = "127.0.0.3"
README = Path(__file__).parents[2] / "contrib" / "sendmail" / "README"


@dataclass
class SendmailRelay:
    sendmail: SendmailInstance
    milter: MilterProcess
    sink: Sink


@pytest.fixture(scope="module")
def relay() -> Iterator[SendmailRelay]:
    if not SENDMAIL_BINARY.exists():
        pytest.skip(f"no Sendmail at {SENDMAIL_BINARY}: run scripts/install-deps")
    scratch = Path(tempfile.mkdtemp(prefix="osfsm-", dir="/tmp"))
    url = f"sqlite:///{scratch}/osfmilter.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    try:
        reset_database(engine)
        register_customer(engine, CUSTOMER, DOMAIN, servers=[REGISTERED])
        with (
            Sink() as sink,
            MilterProcess(scratch / "milter", url) as milter,
            SendmailInstance(
                scratch / "sendmail", relay_port=sink.port, milter=milter.socket_spec
            ) as sendmail,
        ):
            yield SendmailRelay(sendmail, milter, sink)
    finally:
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)


def reply_text(reply: Reply | None, code: int, enhanced_code: str) -> str:
    """The text after the enhanced status code, once both codes are as expected."""
    assert reply is not None
    found_dsn, _, text = reply.text.partition(" ")
    assert (reply.code, found_dsn) == (code, enhanced_code), f"{reply}"
    return text


def test_registered_server_is_relayed_to_the_sink(relay: SendmailRelay) -> None:
    data = make_message(SENDER, "bob@example.org", "via Sendmail", "Hello.\r\n")
    result = send(relay.sendmail.port, SENDER, ["bob@example.org"], data, source=REGISTERED)
    # "250 2.0.0 6B2HARik023685 Message accepted for delivery"
    qid = reply_text(result.data, 250, "2.0.0").split()[0]
    [delivered] = relay.sink.wait_for_message_id(message_id(data))
    assert delivered.rcpt_tos == ("bob@example.org",)
    assert f"qid={qid};" in (delivered.header("X-Osfmilter") or "")
    [decision] = relay.milter.decisions(qid=qid)
    assert (decision["stage"], decision["action"], decision["reason"]) == (
        "eom",
        "accept",
        "accepted",
    )
    assert decision["client"] == REGISTERED
    assert decision["identity"] == f"server:{REGISTERED}/32"
    assert decision["customer"] == CUSTOMER


def test_unregistered_client_is_refused_at_mail_after_sendmails_sender_prefix(
    relay: SendmailRelay,
) -> None:
    data = make_message(SENDER, "bob@example.org", "refused", "Hello.\r\n")
    result = send(relay.sendmail.port, SENDER, ["bob@example.org"], data, source=UNREGISTERED)
    text = reply_text(result.mail, 550, "5.7.1")
    # Sendmail inserts the sender before the milter's text of a MAIL FROM reply.
    assert text.startswith(f"<{SENDER}>... relay not permitted for {UNREGISTERED}: "), text
    assert "SMTP servers > Add" in text
    # contrib/sendmail/README shows this reply for its own sender and client.
    example = re.search(r"^ +# <\*\* (550 .*)$", README.read_text(), re.MULTILINE)
    assert example, "contrib/sendmail/README has no example reply"
    assert str(result.mail) == (
        example[1].replace("you@example.com", SENDER).replace("198.51.100.7", UNREGISTERED)
    )
    assert result.rcpt == () and result.data is None
    [decision] = relay.milter.decisions(client=UNREGISTERED)
    assert (decision["stage"], decision["reason"], decision["code"], decision["enhanced_code"]) == (
        "mail",
        "relay_denied",
        "550",
        "5.7.1",
    )


def test_51st_recipient_of_a_known_sender_is_452_and_the_first_50_are_delivered(
    relay: SendmailRelay,
) -> None:
    rcpts = [f"user{n}@example.org" for n in range(51)]
    data = make_message(SENDER, rcpts[:3], "many recipients", "Hello.\r\n")
    result = send(relay.sendmail.port, SENDER, rcpts, data, source=REGISTERED)
    assert [r.code for r in result.rcpt[:50]] == [250] * 50, result.rcpt[:50]
    text = reply_text(result.rcpt[50], 452, "4.5.3")
    assert text.startswith("too many recipients for a known sender (at most 50 per message)")
    qid = reply_text(result.data, 250, "2.0.0").split()[0]
    wanted = message_id(data)
    delivered = relay.sink.wait_for(
        lambda msgs: sum(len(m.rcpt_tos) for m in msgs if m.message_id == wanted) >= 50
    )
    got = sorted(r for m in delivered if m.message_id == wanted for r in m.rcpt_tos)
    assert got == sorted(rcpts[:50])
    refused, accepted = relay.milter.decisions(count=2, qid=qid)
    assert (refused["stage"], refused["reason"], refused["code"]) == (
        "rcpt",
        "recipient_limit",
        "452",
    )
    assert (accepted["action"], accepted["rcpts"]) == ("accept", "50")


def test_sendmail_refuses_a_milter_socket_below_a_world_writable_directory(
    relay: SendmailRelay,
    tmp_path: Path,
) -> None:
    """Why contrib/sendmail/README puts the unix socket under /run/osfmilter, never /tmp."""
    socket_dir = Path(tempfile.mkdtemp(prefix="osfsm-", dir="/tmp"))  # 0700, in sticky /tmp
    sendmail = SendmailInstance(
        tmp_path / "sendmail", relay_port=relay.sink.port, milter=f"unix:{socket_dir}/milter.sock"
    )
    try:
        with pytest.raises(RuntimeError, match="unsafe: World writable directory"):
            sendmail.start()
    finally:
        sendmail.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)

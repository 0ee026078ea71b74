"""A second milter client: Debian's miltertest drives a real ``osfmilter run``.

Postfix is the relay the other end-to-end tests use. These scripts speak the
milter protocol the way Sendmail does (contrib/sendmail/osfmilter.mc): the
macros per stage, a reply for every recipient. Each Lua script in
``tests/integration/lua/`` stops with ``error()`` on the first unexpected
reply, so miltertest exits 1; the SMTP code and enhanced status code of a
refusal before the end of the message are not visible to miltertest, so the
tests read them from the milter's decision log (one line per decision,
keyed by the queue id the script sent as macro ``i``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from osfmilter.cli import main
from osfmilter.config import Config
from osfmilter.storage.db import make_engine
from tests.harness.database import register_customer, reset_database
from tests.harness.milter import MilterProcess

pytestmark = pytest.mark.integration

LUA = Path(__file__).parent / "lua"

CUSTOMER = "mt-customer"
DOMAIN = "mt-customer.example"
SENDER = f"office@{DOMAIN}"
FOREIGN_SENDER = "news@elsewhere.example"
SERVER4 = "192.0.2.80"
NETWORK6 = "2001:db8:80::/48"
SERVER6 = "2001:db8:80::25"
BLOCKED = "192.0.2.81"
UNREGISTERED = "198.51.100.80"
HOSTED = "203.0.113.80"  # a shared hosting address nobody may register
LOGIN = "mt-hosted-login"


@pytest.fixture(scope="module")
def milter() -> Iterator[MilterProcess]:
    """One milter on embedded SQLite with a small message size for the free plan."""
    scratch = Path(tempfile.mkdtemp(prefix="osfmt-", dir="/tmp"))
    url = f"sqlite:///{scratch}/osfmilter.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    try:
        reset_database(engine)
        register_customer(
            engine, CUSTOMER, DOMAIN, servers=[SERVER4, NETWORK6, BLOCKED], logins=[LOGIN]
        )
        process = MilterProcess(
            scratch / "milter", url, extra_config="[plans.free]\nmax_message_size = 1000\n"
        )
        # As an operator would: the command line, against the milter's own configuration.
        assert (
            main(
                [
                    "--config",
                    str(process.config_path),
                    "server",
                    "block",
                    BLOCKED,
                    "--by",
                    "miltertest",
                    "--reason",
                    "confirmed spam gateway",
                ]
            )
            == 0
        )
        with process:
            yield process
    finally:
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)


def miltertest(milter: MilterProcess, script: str, **defines: str) -> str:
    """Run one script against the milter; its output if it passed (exit status 0)."""
    command = [
        "miltertest",
        "-s",
        str(LUA / script),
        "-D",
        f"sock={milter.socket_spec}",
        "-D",
        f"libdir={LUA}",
    ]
    for name, value in defines.items():
        command += ["-D", f"{name}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (
        f"{script} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}\n"
        f"--- milter log ---\n{milter.log()}"
    )
    return result.stdout


def test_registered_server_clean_message_is_accepted(milter: MilterProcess) -> None:
    output = miltertest(
        milter, "accept.lua", client4=SERVER4, client6=SERVER6, sender=SENDER, qid="MTACC"
    )
    assert output.count("end of message -> ACCEPT") == 3
    assert f"PASS accept {SERVER4} qid=MTACC4" in output
    assert f"PASS accept ::ffff:{SERVER4} qid=MTACCM" in output
    assert f"PASS accept {SERVER6} qid=MTACC6" in output
    for qid, client, identity in (
        ("MTACC4", SERVER4, f"server:{SERVER4}/32"),
        ("MTACCM", SERVER4, f"server:{SERVER4}/32"),  # IPv4-mapped: the same server
        ("MTACC6", SERVER6, f"server:{NETWORK6}"),
    ):
        [decision] = milter.decisions(qid=qid)
        assert decision["action"] == "accept", decision
        assert decision["reason"] == "accepted"
        assert decision["client"] == client
        assert decision["identity"] == identity
        assert decision["customer"] == CUSTOMER
        assert decision["header_from"] == DOMAIN
        assert decision["rcpts"] == "1"


def test_unregistered_client_is_refused_at_mail(milter: MilterProcess) -> None:
    output = miltertest(
        milter, "relay_denied.lua", client=UNREGISTERED, sender=SENDER, qid="MTDENY"
    )
    assert f"MAIL FROM:<{SENDER}> from {UNREGISTERED} -> REPLYCODE" in output
    assert "PASS relay_denied" in output
    [decision] = milter.decisions(qid="MTDENY")
    assert decision["stage"] == "mail"
    assert (decision["action"], decision["reason"]) == ("reject", "relay_denied")
    assert (decision["code"], decision["enhanced_code"]) == ("550", "5.7.1")
    assert decision["client"] == UNREGISTERED


def test_sasl_login_lets_an_unregistered_address_send(milter: MilterProcess) -> None:
    output = miltertest(milter, "sasl.lua", client=HOSTED, sender=SENDER, login=LOGIN, qid="MTSASL")
    assert f"MAIL FROM:<{SENDER}> AUTH={LOGIN} -> CONTINUE" in output
    assert "end of message -> ACCEPT" in output
    assert f"MAIL FROM:<{SENDER}> AUTH=nobody-{LOGIN} -> REPLYCODE" in output
    [accepted] = milter.decisions(qid="MTSASLA")
    assert (accepted["action"], accepted["reason"]) == ("accept", "accepted")
    assert accepted["identity"] == f"sasl:{LOGIN}"
    assert accepted["client"] == HOSTED
    [refused] = milter.decisions(qid="MTSASLU")
    assert (refused["reason"], refused["code"], refused["enhanced_code"]) == (
        "relay_denied",
        "550",
        "5.7.1",
    )


def test_recipients_past_the_unknown_sender_limit_get_452_each(milter: MilterProcess) -> None:
    output = miltertest(
        milter,
        "recipients.lua",
        client=SERVER4,
        unknown_sender=FOREIGN_SENDER,
        known_sender=SENDER,
        qid="MTRCPT",
    )
    for n in range(1, 6):
        assert f"RCPT TO:<r{n}@example.org> ({n}) -> CONTINUE" in output
    assert "RCPT TO:<r6@example.org> (6) -> REPLYCODE" in output
    assert "RCPT TO:<r7@example.org> (7) -> REPLYCODE" in output
    assert "PASS recipients: header From unknown, 452 4.5.3 at end of message" in output

    # One decision for the refused recipients (not one per recipient), then the accept.
    refused, accepted = milter.decisions(qid="MTRCPTR", count=2)
    assert refused["stage"] == "rcpt"
    assert (refused["action"], refused["reason"]) == ("tempfail", "recipient_limit")
    assert (refused["code"], refused["enhanced_code"]) == ("452", "4.5.3")
    assert (accepted["action"], accepted["rcpts"]) == ("accept", "5")

    [header] = milter.decisions(qid="MTRCPTH")
    assert header["stage"] == "eom"
    assert (header["reason"], header["code"], header["enhanced_code"]) == (
        "recipient_limit",
        "452",
        "4.5.3",
    )
    assert header["header_from"] == "elsewhere.example"


def test_oversize_message_is_refused_with_552(milter: MilterProcess) -> None:
    output = miltertest(milter, "oversize.lua", client=SERVER4, sender=SENDER, qid="MTSIZE")
    assert f"MAIL FROM:<{SENDER}> SIZE=5000 -> REPLYCODE" in output
    assert "body chunk 1 (400 bytes) -> CONTINUE" in output
    assert "body chunk 2 (800 bytes more) -> REPLYCODE" in output
    [announced] = milter.decisions(qid="MTSIZES")
    assert announced["stage"] == "mail"
    assert (announced["reason"], announced["code"], announced["enhanced_code"]) == (
        "message_size",
        "552",
        "5.3.4",
    )
    [streamed] = milter.decisions(qid="MTSIZEB")
    assert streamed["stage"] == "body"
    assert (streamed["action"], streamed["reason"]) == ("reject", "message_size")
    assert (streamed["code"], streamed["enhanced_code"]) == ("552", "5.3.4")
    assert int(streamed["size"]) > 1000


def test_blocked_server_is_refused_with_554(milter: MilterProcess) -> None:
    output = miltertest(milter, "blocked.lua", client=BLOCKED, sender=SENDER, qid="MTBLOCK")
    assert f"from blocked {BLOCKED} -> REPLYCODE" in output
    [decision] = milter.decisions(qid="MTBLOCK")
    assert (decision["action"], decision["reason"]) == ("reject", "blocked")
    assert (decision["code"], decision["enhanced_code"]) == ("554", "5.7.1")
    assert decision["identity"] == f"server:{BLOCKED}/32"


def test_a_failing_script_fails_the_run(milter: MilterProcess, tmp_path: Path) -> None:
    """The other tests rely on error() making miltertest exit 1."""
    script = tmp_path / "wrong.lua"
    script.write_text(
        f'dofile("{LUA}/osf.lua")\n'
        f'local conn = open("{UNREGISTERED}", "unknown.example.net")\n'
        f'mail(conn, "MTWRONG", "{SENDER}", "")\n'
        'expect(conn, "MAIL FROM", SMFIR_CONTINUE)\n'
    )
    result = subprocess.run(
        ["miltertest", "-s", str(script), "-D", f"sock={milter.socket_spec}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "FAIL MAIL FROM: expected CONTINUE, got REPLYCODE" in result.stdout

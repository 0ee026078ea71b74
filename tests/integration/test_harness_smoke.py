"""Smoke tests for tests.harness: a private Postfix relaying to the sink,
with no milter (mail flows) and with an unreachable milter (mail is
tempfailed, nothing is delivered).

Needs root and the Debian postfix package; every socket is on loopback.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    Client,
    PostfixInstance,
    Sink,
    TcpProxy,
    free_port,
    make_message,
    message_id_of,
    send,
)

# A private Postfix needs the postfix package and root; scripts/install-deps
# installs the one, and a run without the other fails loudly, never skips.
pytestmark = pytest.mark.integration

SENDER = "sender@example.org"
RECIPIENT = "rcpt@example.net"


def _mid(message: bytes) -> str:
    mid = message_id_of(message)
    assert mid is not None
    return mid


def _workdir() -> Path:
    # Short and world-searchable (pytest's tmp_path is 0700 below
    # /tmp/pytest-of-root): the postfix user must reach the queue, and unix
    # socket paths must stay below 108 bytes.
    return Path(tempfile.mkdtemp(prefix="osfpf-", dir="/tmp"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = _workdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postfix(workdir: Path, sink: Sink) -> Iterator[PostfixInstance]:
    instance = PostfixInstance(workdir, relay_port=sink.port, milter=None, name="osfpf-smoke")
    with instance:
        yield instance
    assert not instance.is_running()


@pytest.mark.parametrize(
    ("client_addr", "login", "expected_in_log"),
    [
        ("192.0.2.10", None, "client=unknown[192.0.2.10]"),
        ("2001:db8::10", None, "client=unknown[2001:db8::10]"),
        (None, "alice", "sasl_method=XCLIENT, sasl_username=alice"),
    ],
    ids=["ipv4", "ipv6", "login"],
)
def test_message_relayed_once(
    postfix: PostfixInstance,
    sink: Sink,
    client_addr: str | None,
    login: str | None,
    expected_in_log: str,
) -> None:
    message = make_message(SENDER, RECIPIENT, "smoke", "Hello from the harness.\n")
    mid = _mid(message)

    result = send(
        postfix.smtpd_port, SENDER, [RECIPIENT], message, client_addr=client_addr, login=login
    )

    assert result.xclient is not None and result.xclient.code == 220, result
    assert result.mail.code == 250, result
    assert [r.code for r in result.rcpt] == [250], result
    assert result.data is not None and result.data.code == 250, result
    assert result.accepted

    received = sink.wait_for_message_id(mid, timeout=30)
    postfix.wait_queue_empty(timeout=30)
    assert sink.count_message_id(mid) == 1
    (got,) = received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == (RECIPIENT,)
    assert b"Hello from the harness.\r\n" in got.data
    assert expected_in_log in postfix.maillog()


def test_ipv6_listener_and_8bit_body(postfix: PostfixInstance, sink: Sink) -> None:
    assert postfix.smtpd_port_v6 is not None
    message = make_message(SENDER, RECIPIENT, "Grüße", "Ünïcødé body ✓\n")
    result = send(
        postfix.smtpd_port_v6,
        SENDER,
        [RECIPIENT],
        message,
        host="::1",
        mail_options=["SMTPUTF8", "BODY=8BITMIME"],
    )
    assert result.accepted, result
    (got,) = sink.wait_for_message_id(_mid(message))
    assert "Ünïcødé body ✓".encode() in got.data
    assert got.header("Subject") == "Grüße"


def test_unreachable_milter_tempfails(sink: Sink, workdir: Path) -> None:
    dead_milter = f"inet:{free_port()}@127.0.0.1"
    instance = PostfixInstance(
        workdir, relay_port=sink.port, milter=dead_milter, name="osfpf-deadmilter"
    )
    with instance:
        message = make_message(SENDER, RECIPIENT, "must not pass", "blocked\n")
        result = send(instance.smtpd_port, SENDER, [RECIPIENT], message, client_addr="192.0.2.10")

        refused = result.first_refusal
        assert refused is not None and refused.temporary, result
        assert refused in (result.mail, *result.rcpt), result
        assert result.data is None, result
        assert instance.queue_is_empty()
        time.sleep(1.5)  # give a wrongly queued message a chance to show up
        assert sink.messages == []
        assert f"connect to Milter service {instance.get_postconf('smtpd_milters')}" in (
            instance.maillog()
        )


def test_two_instances_side_by_side(sink: Sink) -> None:
    dirs = [_workdir(), _workdir()]
    instances = [
        PostfixInstance(d, relay_port=sink.port, name=f"osfpf-side{i}") for i, d in enumerate(dirs)
    ]
    try:
        for instance in instances:
            instance.start()
        assert instances[0].smtpd_port != instances[1].smtpd_port
        mids = []
        for instance in instances:
            message = make_message(SENDER, RECIPIENT, instance.name, "side by side\n")
            assert send(instance.smtpd_port, SENDER, [RECIPIENT], message).accepted
            mids.append(_mid(message))
        for mid in mids:
            sink.wait_for_message_id(mid)
    finally:
        for instance in instances:
            instance.remove()
    assert not any(instance.is_running() for instance in instances)


def test_large_message_passes_postfix_and_sink(postfix: PostfixInstance, sink: Sink) -> None:
    size = 52_000_000  # above the milter's 50 MB, below Postfix's 60 MiB
    message = make_message(SENDER, RECIPIENT, "large", "big\n", size=size)
    assert len(message) == size
    result = send(postfix.smtpd_port, SENDER, [RECIPIENT], message, size=size)
    assert result.accepted, result
    (got,) = sink.wait_for_message_id(_mid(message), timeout=60)
    assert got.data.endswith(message[-1000:])


def test_bare_newline_smuggling_is_neutralised(postfix: PostfixInstance, sink: Sink) -> None:
    # A loopback client without XCLIENT is in $mynetworks, which the default
    # smtpd_forbid_bare_newline_exclusions would exempt; the harness clears it.
    # Postfix >= 3.7.10 (Debian 12's 3.7.11) knows the setting; the harness sets it.
    assert postfix.get_postconf("smtpd_forbid_bare_newline") == "normalize"
    outer = make_message(SENDER, RECIPIENT, "outer", "body")
    inner = make_message("evil@example.org", "victim@example.net", "smuggled", "evil")
    probe = (
        outer
        + b"\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
        + inner
        + b".\r\n"
    )
    with Client() as client:
        client.connect(postfix.smtpd_port)
        assert client.mail(SENDER).code == 250
        assert client.rcpt(RECIPIENT).code == 250
        assert client.data_raw(probe).code == 250
    sink.wait_for_message_id(_mid(outer))
    postfix.wait_queue_empty()
    assert sink.count_message_id(_mid(inner)) == 0
    assert len(sink.messages) == 1


def test_deferred_delivery_is_retried_once(postfix: PostfixInstance, sink: Sink) -> None:
    sink.data_reply = "451 4.3.0 sink says later"
    message = make_message(SENDER, RECIPIENT, "retry", "try again\n")
    assert send(postfix.smtpd_port, SENDER, [RECIPIENT], message).accepted
    deadline = time.monotonic() + 15
    while not postfix.queue() or postfix.queue()[0]["recipients"][0].get("delay_reason") is None:
        assert time.monotonic() < deadline, postfix.maillog_tail()
        time.sleep(0.1)
    assert "sink says later" in postfix.queue()[0]["recipients"][0]["delay_reason"]
    assert not postfix.queue_is_empty()

    sink.data_reply = None
    postfix.flush()
    sink.wait_for_message_id(_mid(message), timeout=15)
    postfix.wait_queue_empty(timeout=15)
    assert sink.count_message_id(_mid(message)) == 1


def test_postconf_and_reload(postfix: PostfixInstance) -> None:
    postfix.postconf(smtpd_banner="$myhostname ESMTP reloaded")
    assert postfix.get_postconf("smtpd_banner") == "$myhostname ESMTP reloaded"
    postfix.reload()
    deadline = time.monotonic() + 15
    while True:
        with Client() as client:
            banner = client.connect(postfix.smtpd_port)
        if banner.text.endswith("ESMTP reloaded"):
            break
        assert time.monotonic() < deadline, banner
        time.sleep(0.2)


def test_make_message_exact_sizes() -> None:
    base = len(make_message(SENDER, RECIPIENT, "s", "b", message_id="<x@harness.test>"))
    for size in (base, base + 2, base + 77, base + 78, base + 79, base + 1000, 100_000):
        message = make_message(
            SENDER, RECIPIENT, "s", "b", message_id="<x@harness.test>", size=size
        )
        assert len(message) == size
        assert b"\n" not in message.replace(b"\r\n", b"")
    with pytest.raises(ValueError, match="one byte"):
        make_message(SENDER, RECIPIENT, "s", "b", message_id="<x@harness.test>", size=base + 1)


def test_tcp_proxy_pause_and_resume(sink: Sink) -> None:
    with TcpProxy("127.0.0.1", sink.port) as proxy:
        client = smtplib.SMTP("127.0.0.1", proxy.port, local_hostname="t.harness.test")
        assert client.noop()[0] == 250

        proxy.pause()
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            client.noop()
        client.close()
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            smtplib.SMTP("127.0.0.1", proxy.port, local_hostname="t.harness.test", timeout=5)
        assert proxy.active_connections == 0

        proxy.resume()
        with smtplib.SMTP("127.0.0.1", proxy.port, local_hostname="t.harness.test") as again:
            assert again.noop()[0] == 250
        # The listening port survived the outage.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
            pass


def test_starttls_and_auth_through_the_shipped_dovecot(sink: Sink, workdir: Path) -> None:
    """tls.py's certificate verifies; Postfix reaches DovecotAuth at an absolute smtpd_sasl_path."""
    from argon2 import PasswordHasher, Type
    from sqlalchemy import create_engine, text

    from tests.harness.dovecot import DovecotAuth
    from tests.harness.tls import make_certificate

    workdir.chmod(0o755)  # smtpd (user postfix) must reach its queue and Dovecot's socket
    # Only what the passdb query reads: DovecotAuth needs no more of the schema.
    database = workdir / "accounts.sqlite3"
    engine = create_engine(f"sqlite:///{database}")
    hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE sasl_accounts (login TEXT, password_hash TEXT)"))
        connection.execute(
            text("INSERT INTO sasl_accounts VALUES ('app@example.org', :hash), ('nopw', NULL)"),
            {"hash": "{ARGON2ID}" + hasher.hash("correct horse battery")},
        )
    engine.dispose()
    certificate = make_certificate(workdir / "tls")
    with DovecotAuth(workdir / "dovecot", f"sqlite:///{database}") as dovecot:
        group = dovecot.process.pid if dovecot.process else 0
        settings = {
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": dovecot.postfix_sasl_path,
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            **certificate.postfix_main_cf(),
        }
        with (
            PostfixInstance(
                workdir / "postfix", relay_port=sink.port, extra_main_cf=settings, name="osfpf-tls"
            ) as postfix,
            Client() as client,
        ):
            client.connect(postfix.smtpd_port)
            assert "starttls" in client.features and "auth" not in client.features
            assert client.starttls(certificate.client_context()).code == 220
            assert isinstance(client.smtp.sock, ssl.SSLSocket)
            assert client.smtp.sock.getpeercert()  # verified against the test's own CA
            assert client.features["auth"].split() == ["PLAIN", "LOGIN"]
            assert client.auth_plain("app@example.org", "wrong password").code == 535
            assert client.auth_plain("nopw", "").code == 535
            assert client.auth_plain("app@example.org", "correct horse battery").code == 235
            message = make_message(SENDER, RECIPIENT, "tls", "Over TLS, logged in.\n")
            assert client.mail(SENDER).code == 250
            assert client.rcpt(RECIPIENT).code == 250
            assert client.data(message).code == 250
            sink.wait_for_message_id(_mid(message))
            assert "sasl_method=PLAIN, sasl_username=app@example.org" in postfix.maillog()
    # Dovecot's master and every child of it are gone.
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)

"""SASL accounts that really log in: real Postfix, real Dovecot, smtplib, on SQLite and PostgreSQL.

The relay runs contrib's SASL and TLS settings with a Dovecot built from
contrib/dovecot on the relay's own database; accounts are made with the
real CLI. Each test connects from a loopback address of its own
(127.0.0.N): no SMTP server is registered, so the client address is an
unregistered one, and Dovecot's failure penalty, which grows per client
address, does not carry from one test to the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from osfmilter.storage.schema import SaslAccount
from tests.harness.smtpclient import Client, Reply, make_message
from tests.integration.conftest import BACKENDS, Relay, message_id, relay_on

pytestmark = pytest.mark.integration

CUSTOMER = "acme"
SENDER = "app@acme.example"
RECIPIENT = "bob@example.org"
PASSWORD_LINE = re.compile(r"^password: ([a-z2-7]{32})$", re.MULTILINE)


@pytest.fixture(scope="module", params=BACKENDS)
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    with relay_on(request, "osf-sasl", sasl=True) as relay:
        relay.register(CUSTOMER, domains=("acme.example",))
        yield relay


def add_account(relay: Relay, login: str) -> str:
    """``osfmilter sasl add``; the password it prints."""
    status, out, err = relay.cli_output("sasl", "add", login, "--customer", CUSTOMER)
    assert status == 0, (out, err)
    [password] = PASSWORD_LINE.findall(out)
    return password


def stored_hash(relay: Relay, login: str) -> str:
    with relay.store.session() as session:
        account = session.scalars(select(SaslAccount).where(SaslAccount.login == login)).one()
        assert account.password_hash is not None
        return account.password_hash


def assert_reply(reply: Reply, code: int, enhanced: str) -> None:
    assert (reply.code, reply.text.split(" ", 1)[0]) == (code, enhanced), str(reply)


def logged_in(relay: Relay, source: str, login: str, password: str) -> tuple[Client, Reply]:
    """A session from ``source`` after EHLO, STARTTLS (verifying the relay's certificate)
    and AUTH PLAIN; the AUTH reply."""
    assert relay.certificate is not None
    client = Client(source=source)
    try:
        assert client.connect(relay.port).code == 220
        assert client.starttls(relay.certificate.client_context()).code == 220
        return client, client.auth_plain(login, password)
    except BaseException:
        client.quit()
        raise


def send_logged_in(relay: Relay, source: str, login: str, password: str) -> bytes:
    """Log in, send one message and wait until the sink has it; the message."""
    data = make_message(SENDER, [RECIPIENT], "logged in", "Sent with a SASL login.\r\n")
    client, reply = logged_in(relay, source, login, password)
    with client:
        assert_reply(reply, 235, "2.7.0")
        assert client.mail(SENDER).code == 250
        assert client.rcpt(RECIPIENT).code == 250
        accepted = client.data(data)
        assert accepted.code == 250, accepted
    relay.sink.wait_for_message_id(message_id(data))
    return data


def auth_reply(relay: Relay, source: str, login: str, password: str) -> Reply:
    client, reply = logged_in(relay, source, login, password)
    client.quit()
    return reply


def test_auth_is_not_offered_before_starttls_and_refused_if_tried(relay: Relay) -> None:
    login = "before-tls@acme.example"
    password = add_account(relay, login)
    with Client(source="127.0.0.2") as client:
        assert client.connect(relay.port).code == 220
        assert "starttls" in client.features
        assert "auth" not in client.features
        refused = client.auth_plain(login, password)
        assert refused.permanent and refused.code != 535, refused
        # After STARTTLS it is offered, PLAIN and LOGIN.
        assert relay.certificate is not None
        assert client.starttls(relay.certificate.client_context()).code == 220
        assert client.features["auth"].split() == ["PLAIN", "LOGIN"]


def test_the_right_password_from_an_unregistered_address_is_relayed_once(relay: Relay) -> None:
    login = "right@acme.example"
    password = add_account(relay, login)
    data = send_logged_in(relay, "127.0.0.3", login, password)
    relay.postfix.wait_queue_empty()
    assert relay.sink.count_message_id(message_id(data)) == 1
    [event] = relay.events(client_ip="127.0.0.3")
    assert (event.action, event.identity) == ("accept", f"sasl:{login}")
    # contrib's SASL and TLS keys are all known to this Postfix.
    assert "unused parameter" not in relay.postfix.maillog()


def test_without_logging_in_the_same_address_is_refused(relay: Relay) -> None:
    # The control: 127.0.0.4 relays only thanks to the login.
    with Client(source="127.0.0.4") as client:
        client.connect(relay.port)
        assert client.starttls().code == 220
        assert_reply(client.mail(SENDER), 550, "5.7.1")


def test_a_wrong_password_is_535(relay: Relay) -> None:
    login = "wrong@acme.example"
    add_account(relay, login)
    assert_reply(auth_reply(relay, "127.0.0.5", login, "not-the-password-at-all"), 535, "5.7.8")


def test_a_removed_account_is_535(relay: Relay) -> None:
    login = "removed@acme.example"
    password = add_account(relay, login)
    assert_reply(auth_reply(relay, "127.0.0.6", login, password), 235, "2.7.0")
    assert relay.cli_output("sasl", "remove", login)[0] == 0
    assert_reply(auth_reply(relay, "127.0.0.6", login, password), 535, "5.7.8")


def test_a_blocked_account_authenticates_but_is_554_at_mail(relay: Relay) -> None:
    login = "blocked@acme.example"
    password = add_account(relay, login)
    status, out, err = relay.cli_output(
        "server", "block", login, "--by", "test", "--reason", "password leaked"
    )
    assert status == 0, (out, err)
    client, reply = logged_in(relay, "127.0.0.7", login, password)
    with client:
        assert_reply(reply, 235, "2.7.0")
        refused = client.mail(SENDER)
        assert_reply(refused, 554, "5.7.1")
        assert "blocked" in refused.text


def test_sasl_passwd_retires_the_old_password_at_once(relay: Relay) -> None:
    login = "changed@acme.example"
    old = add_account(relay, login)
    assert_reply(auth_reply(relay, "127.0.0.8", login, old), 235, "2.7.0")
    status, out, err = relay.cli_output("sasl", "passwd", login)
    assert status == 0, (out, err)
    [new] = PASSWORD_LINE.findall(out)
    assert new != old
    assert_reply(auth_reply(relay, "127.0.0.8", login, old), 535, "5.7.8")
    assert_reply(auth_reply(relay, "127.0.0.9", login, new), 235, "2.7.0")


def test_a_chosen_password_from_stdin_works(relay: Relay) -> None:
    login = "chosen@acme.example"
    chosen = "a long chosen passphrase"
    status, out, err = relay.cli_output(
        "sasl", "add", login, "--customer", CUSTOMER, "--password-stdin", stdin=chosen + "\n"
    )
    assert status == 0, (out, err)
    assert "password:" not in out and chosen not in out + err
    assert_reply(auth_reply(relay, "127.0.0.10", login, chosen), 235, "2.7.0")


def test_the_password_is_never_logged_and_the_hash_never_leaves_the_database(
    relay: Relay,
) -> None:
    login = "secret@acme.example"
    status, add_out, add_err = relay.cli_output("sasl", "add", login, "--customer", CUSTOMER)
    assert status == 0
    [password] = PASSWORD_LINE.findall(add_out)
    send_logged_in(relay, "127.0.0.11", login, password)  # every log had its chance to see it
    status, passwd_out, passwd_err = relay.cli_output("sasl", "passwd", login)
    assert status == 0
    outputs = [add_out, add_err, passwd_out, passwd_err]
    for command in (("sasl", "list"), ("sasl", "list", "--customer", CUSTOMER)):
        status, out, err = relay.cli_output(*command)
        assert status == 0, (command, out, err)
        outputs += [out, err]
    status, out, err = relay.cli_output("server", "history", login)
    outputs += [out, err]
    hashed = stored_hash(relay, login)
    for text in outputs:
        assert hashed not in text and "$argon2" not in text and "{ARGON2ID}" not in text
    assert relay.dovecot is not None
    for log in (relay.milter.log(), relay.postfix.maillog(), relay.dovecot.log(tail=None)):
        assert password not in log
        assert "$argon2" not in log

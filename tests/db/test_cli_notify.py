"""``osfmilter customer contact`` and ``webhook``: where a customer's notifications go;
a webhook's secret printed once and never again."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, select

from osfmilter.storage.schema import Webhook
from osfmilter.storage.store import SqlStore
from tests.db.conftest import ALLOW_NON_GLOBAL, Run
from tests.harness.sink import Sink
from tests.harness.webhooks import WebhookReceiver

SECRET = re.compile(r"^secret: ([0-9a-f]{64})$", re.MULTILINE)
ADDED = re.compile(r"^webhook (\d+) added", re.MULTILINE)


def one_line_error(result: tuple[int, str, str], message: str) -> None:
    status, _, err = result
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_contacts_are_added_listed_and_removed(run: Run) -> None:
    run("customer", "add", "acme")
    status, out, err = run("customer", "contact", "add", "acme", " Ops@Example.COM ")
    assert status == 0, err
    assert "ops@example.com added as a contact of acme" in out
    run("customer", "contact", "add", "acme", "boss@example.com")
    listed = run("customer", "contact", "list", "acme")[1].split()
    assert listed == ["contact", "boss@example.com", "ops@example.com"]
    assert run("customer", "contact", "remove", "acme", "OPS@example.com")[0] == 0
    assert run("customer", "contact", "list", "acme")[1].split() == ["contact", "boss@example.com"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "nobody", "a@example.com"), "no customer named 'nobody'"),
        (("add", "acme", "not-an-address"), "is not a valid e-mail address"),
        (("add", "acme", "ops@example.com"), "ops@example.com is already a contact of acme"),
        (("remove", "acme", "who@example.com"), "who@example.com is not a contact of acme"),
        (("list", "nobody"), "no customer named 'nobody'"),
    ],
)
def test_contact_errors_are_one_line(run: Run, args: tuple[str, ...], message: str) -> None:
    run("customer", "add", "acme")
    run("customer", "contact", "add", "acme", "ops@example.com")
    one_line_error(run("customer", "contact", *args), message)


def test_a_webhook_secret_is_printed_once_and_stored_for_signing(run: Run, engine: Engine) -> None:
    run("customer", "add", "acme")
    status, out, err = run("webhook", "add", "--customer", "acme", "https://hooks.example/osf")
    assert status == 0, err
    [secret] = SECRET.findall(out)
    [webhook_id] = ADDED.findall(out)
    with SqlStore(engine).session() as session:
        assert session.scalars(select(Webhook.secret)).one() == secret
    listed = run("webhook", "list")[1]
    assert "https://hooks.example/osf" in listed and "acme" in listed and secret not in listed
    assert secret not in run("webhook", "list", "--customer", "acme")[1]
    assert run("webhook", "remove", webhook_id)[1].startswith(f"webhook {webhook_id} removed")
    assert run("webhook", "list")[1].split() == ["id", "customer", "url", "added"]


def test_plain_http_only_on_loopback_or_on_purpose(run: Run) -> None:
    run("customer", "add", "acme")
    one_line_error(
        run("webhook", "add", "--customer", "acme", "http://hooks.example/osf"),
        "is plain http: use https (--allow-http",
    )
    assert run("webhook", "add", "--customer", "acme", "http://127.0.0.1:8080/osf")[0] == 0
    assert run("webhook", "add", "--customer", "acme", "http://[::1]:8080/osf")[0] == 0
    assert run("webhook", "add", "--customer", "acme", "http://localhost/osf")[0] == 0
    status, _, err = run(
        "webhook", "add", "--customer", "acme", "--allow-http", "http://hooks.example/osf"
    )
    assert status == 0, err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example/", "is not an https:// URL with a host"),
        ("https:///path", "is not an https:// URL with a host"),
        ("https://user:pw@hooks.example/", "holds a user name or password"),
        ("https://hooks.example:99999/", "is not a URL"),
        ("https://hooks.example/#frag", "has a #fragment"),
        ("https://hooks.example/a b", "printable characters, no spaces"),
    ],
)
def test_bad_webhook_urls_are_one_line_errors(run: Run, url: str, message: str) -> None:
    run("customer", "add", "acme")
    one_line_error(run("webhook", "add", "--customer", "acme", url), message)


def test_webhook_errors_name_the_problem(run: Run) -> None:
    run("customer", "add", "acme")
    one_line_error(
        run("webhook", "add", "--customer", "nobody", "https://h.example/"),
        "no customer named 'nobody'",
    )
    run("webhook", "add", "--customer", "acme", "https://h.example/")
    one_line_error(
        run("webhook", "add", "--customer", "acme", "https://h.example/"),
        "https://h.example/ is already a webhook of acme",
    )
    one_line_error(run("webhook", "remove", "999"), "no webhook with id 999")
    one_line_error(run("webhook", "list", "--customer", "nobody"), "no customer named 'nobody'")


def test_a_removed_customer_takes_its_contacts_and_webhooks(run: Run, engine: Engine) -> None:
    run("customer", "add", "acme")
    run("customer", "contact", "add", "acme", "ops@example.com")
    run("webhook", "add", "--customer", "acme", "https://h.example/")
    assert run("customer", "remove", "acme")[0] == 0
    with SqlStore(engine).session() as session:
        assert session.scalars(select(Webhook)).all() == []


def test_notify_run_once_delivers_an_operators_block(run: Run) -> None:
    """server block tells the customer (the command line writes the outbox too)."""
    with Sink() as sink, WebhookReceiver() as receiver:
        run("customer", "add", "acme")
        run("customer", "contact", "add", "acme", "ops@acme.example")
        secret = SECRET.findall(run("webhook", "add", "--customer", "acme", receiver.url)[1])[0]
        run("server", "add", "192.0.2.10", "--customer", "acme")
        assert (
            run("server", "block", "192.0.2.10", "--by", "op", "--reason", "spam gateway")[0] == 0
        )
        settings = (
            f'{ALLOW_NON_GLOBAL}[notify]\nsmtp = "127.0.0.1:{sink.port}"\n'
            'sender = "relay@osf.example"\n'
        )
        status, out, err = run("notify", "run", "--once", config_text=settings)
        assert status == 0, err
        assert out.strip() == "notifications: 2 sent, 0 to retry, 0 given up"
        [mail] = sink.messages
        assert mail.header("Subject") == "osfmilter: your SMTP server 192.0.2.10/32 is now onveilig"
        [post] = receiver.received
        assert post.document["type"] == "state.onveilig" and post.verifies(secret)
        assert run("notify", "run", "--once")[1].strip().startswith("notifications: 0 sent")


def test_notify_run_needs_a_sender_address(run: Run) -> None:
    one_line_error(run("notify", "run", "--once"), "[notify] sender is not set")

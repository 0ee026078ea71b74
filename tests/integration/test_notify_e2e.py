"""A server turned verdacht by GTUBE through a real Postfix and a real spamd; the
notification sender, a process of its own, mails the contact and posts a signed webhook."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.config import Config
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import Notice
from osfmilter.storage import admin, contacts, outbox
from osfmilter.storage.db import make_engine
from osfmilter.storage.schema import NotificationDelivery
from tests.harness.database import reset_database
from tests.harness.ports import free_port
from tests.harness.sink import Sink
from tests.harness.smtpclient import make_message, send
from tests.harness.spamd import GTUBE, SpamdProcess
from tests.harness.webhooks import WebhookReceiver
from tests.integration.conftest import running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.31"
CONTACT = "postmaster@gtube.example"
OSFMILTER = (sys.executable, "-m", "osfmilter")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
        return text


def test_gtube_makes_the_server_verdacht_and_the_customer_is_told_once(
    scratch: Path, spamd: SpamdProcess
) -> None:
    metrics_port = free_port()
    with Sink() as mailbox, WebhookReceiver() as receiver:
        config = (
            f'[spam]\nbackend = "spamassassin"\naddress = "{spamd.address}"\ntimeout = 20\n'
            "reject_score = 10.0\n"
            f'[notify]\nsmtp = "127.0.0.1:{mailbox.port}"\nsender = "relay@osf.example"\n'
            f'poll_seconds = 0.2\nmetrics_listen = "127.0.0.1:{metrics_port}"\n'
        )
        url = f"sqlite:///{scratch}/notify.sqlite3"
        with running_relay(url, milter_config=config, name="osf-notify") as relay:
            relay.register("gtube", "free", domains=("gtube.example",), servers=(SERVER,))
            with relay.store.session() as session:
                now = datetime.now(UTC)
                contacts.add_contact(session, "gtube", CONTACT, now)
                _, secret = contacts.add_webhook(session, "gtube", receiver.url, now)
            notifier = subprocess.Popen(
                [*OSFMILTER, "--config", str(relay.milter.config_path), "notify", "run"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                data = make_message(
                    "news@gtube.example", ["bob@example.org"], "offer", GTUBE.decode() + "\r\n"
                )
                result = send(
                    relay.port, "news@gtube.example", ["bob@example.org"], data, client_addr=SERVER
                )
                assert result.data is not None and result.data.code == 550, result
                [post] = receiver.wait_for(1)
                [mail] = mailbox.wait_for(lambda messages: len(messages) >= 1)
                time.sleep(1)  # a second delivery would have come by now
                assert len(receiver.received) == 1 and len(mailbox.messages) == 1
                document = post.document
                assert document["type"] == "state.verdacht"
                assert (document["customer"], document["identity"]) == (
                    "gtube",
                    f"server:{SERVER}/32",
                )
                assert document["details"]["reason"].startswith("spam detected: score 1")
                assert post.verifies(secret)
                assert mail.rcpt_tos == (CONTACT,)
                assert mail.header("X-Osfmilter-Event") == document["id"]
                body = message_from_bytes(mail.data, policy=default).get_body()
                assert body is not None
                assert "is now verdacht (suspicious)" in " ".join(body.get_content().split())
                deadline = time.monotonic() + 10
                while 'osfmilter_notification_deliveries{state="sent"} 2.0' not in (
                    text := scrape(metrics_port)
                ):
                    assert time.monotonic() < deadline, text
                    time.sleep(0.2)
                assert 'osfmilter_notification_deliveries{state="pending"} 0.0' in text
            finally:
                notifier.terminate()
                output = notifier.communicate(timeout=30)[0].decode()
            assert notifier.returncode == 0, output


def test_a_notifier_killed_between_send_and_mark_sends_again_with_the_same_id(
    scratch: Path,
) -> None:
    """SIGKILL while the receiver holds the request: it has the notification, the
    notifier never marked it. The next notifier sends it again once the lease ends."""
    url = f"sqlite:///{scratch}/killed.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    reset_database(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        customer_id = admin.add_customer(session, "acme", "free", now).id
    with WebhookReceiver() as receiver:
        with Session(engine) as session, session.begin():
            contacts.add_webhook(session, "acme", receiver.url, now)
        notice = Notice(NoticeType.STATE_VEILIG, now, customer_id, "server:192.0.2.1/32", {})
        with engine.begin() as connection:
            outbox.write(connection, [notice])
        config = scratch / "killed.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[notify]\nsender = "relay@osf.example"\n'
            "timeout = 1\npoll_seconds = 0.2\n"
        )
        command = [*OSFMILTER, "--config", str(config), "notify", "run"]
        receiver.delay = 30  # the answer never comes in time
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            receiver.wait_for(1)
        finally:
            first.kill()  # SIGKILL: between the send and the mark
            first.wait(10)
        receiver.delay = 0
        started = time.monotonic()
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            delivered, again = receiver.wait_for(2, timeout=60)
        finally:
            second.terminate()
            second.communicate(timeout=30)
        assert time.monotonic() - started >= 5  # not before the dead one's lease ended
        assert delivered.document["id"] == again.document["id"] == notice.id
        with Session(engine) as session:
            [state] = session.scalars(select(NotificationDelivery.state)).all()
        assert state == "sent"
    engine.dispose()


@pytest.mark.postgres
def test_two_notifiers_on_postgresql_send_each_notification_once(
    pg_server_url: str, scratch: Path
) -> None:
    """Two notify run processes on one database, as on two nodes: 60 notifications, each
    posted once, while the receiver is slow enough for their claims to overlap."""
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        customer_id = admin.add_customer(session, "acme", "free", now).id
    with WebhookReceiver() as receiver:
        with Session(engine) as session, session.begin():
            contacts.add_webhook(session, "acme", receiver.url, now)
        notices = [
            Notice(NoticeType.STATE_VEILIG, now, customer_id, f"server:192.0.2.{i}/32", {})
            for i in range(60)
        ]
        with engine.begin() as connection:
            outbox.write(connection, notices)
        config = scratch / "two.toml"
        config.write_text(
            f'[database]\nurl = "{pg_server_url}"\n[notify]\nsender = "relay@osf.example"\n'
            "timeout = 5\npoll_seconds = 0.2\n"
        )
        receiver.delay = 0.05
        command = [*OSFMILTER, "--config", str(config), "notify", "run"]
        notifiers = [
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        try:
            receiver.wait_for(60, timeout=60)
            time.sleep(1)  # a second copy would have come by now
        finally:
            for notifier in notifiers:
                notifier.terminate()
            logs = [notifier.communicate(timeout=30)[1].decode() for notifier in notifiers]
        # Both took part (each logs a line per notification it sent).
        sent = [log.count("sent by webhook") for log in logs]
        assert sum(sent) == 60 and min(sent) > 0, sent
        ids = [post.document["id"] for post in receiver.received]
        assert sorted(ids) == sorted(notice.id for notice in notices)
        with Session(engine) as session:
            states = set(session.scalars(select(NotificationDelivery.state)))
        assert states == {"sent"}
    engine.dispose()

"""The database goes away under a running relay: mail is delayed, never lost.

The milter reaches PostgreSQL through a TCP proxy the test can cut, as a
network partition or a database restart would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.harness.smtpclient import make_message, send
from tests.harness.tcpproxy import TcpProxy
from tests.integration.conftest import Relay, message_id, running_relay

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SECRET = "s3cret-Pa55"  # noqa: S105 - a test password, never a real one


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def pg_relay(pg_server_url: str, proxy: TcpProxy) -> Iterator[Relay]:
    # Trust authentication ignores the password; it is there to be kept secret.
    through_proxy = make_url(pg_server_url).set(port=proxy.port, password=SECRET)
    with running_relay(pg_server_url, through_proxy.render_as_string(hide_password=False)) as relay:
        relay.register("acme", "free", domains=("acme.example",), servers=("192.0.2.10",))
        yield relay


def test_database_down_tempfails_and_the_retry_is_delivered_once(
    pg_relay: Relay, proxy: TcpProxy
) -> None:
    data = make_message("news@acme.example", ["bob@example.org"], "test", "Hello.\r\n")
    first = send(
        pg_relay.port, "news@acme.example", ["bob@example.org"], data, client_addr="192.0.2.10"
    )
    assert first.accepted, first
    pg_relay.sink.wait_for(lambda msgs: len(msgs) == 1)

    retry = make_message("news@acme.example", ["bob@example.org"], "retry", "Hello again.\r\n")
    proxy.pause()
    try:
        refused = send(
            pg_relay.port, "news@acme.example", ["bob@example.org"], retry, client_addr="192.0.2.10"
        )
        assert (refused.mail.code, refused.mail.text.split(" ", 1)[0]) == (451, "4.3.0")
        assert not refused.accepted
        assert "database_error" in pg_relay.milter.log()
    finally:
        proxy.resume()

    # The customer's queue retries; the milter recovers without a restart.
    again = send(
        pg_relay.port, "news@acme.example", ["bob@example.org"], retry, client_addr="192.0.2.10"
    )
    assert again.accepted, again
    [delivered] = pg_relay.sink.wait_for_message_id(message_id(retry))
    assert delivered.rcpt_tos == ("bob@example.org",)
    assert pg_relay.milter.process is not None and pg_relay.milter.process.poll() is None
    log = pg_relay.milter.log()
    assert "database failed" in log  # the outage was logged (once) ...
    assert SECRET not in log  # ... without the password

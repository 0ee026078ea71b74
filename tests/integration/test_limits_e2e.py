"""Rate limits through a real Postfix, on one relay node and on two sharing PostgreSQL.

Time passes for the windows by ageing the stored slots: the milter under test
runs on the real clock, and the database is where the windows live.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.smtpclient import Result, make_message, send
from tests.integration.conftest import Relay, message_id, running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.20"


@pytest.fixture(scope="module", autouse=True)
def customer(relay: Relay) -> None:
    relay.register("ratey", "free", domains=("ratey.example",), servers=(SERVER,))


def send_one(port: int, sender: str, subject: str) -> tuple[bytes, Result]:
    data = make_message(sender, ["bob@example.org"], subject, "Hello.\r\n")
    return data, send(port, sender, ["bob@example.org"], data, client_addr=SERVER)


def test_101st_known_message_is_451_and_delivered_after_the_window(relay: Relay) -> None:
    for i in range(100):
        _, result = send_one(relay.port, "news@ratey.example", f"known {i}")
        assert result.accepted, (i, result)
    data, refused = send_one(relay.port, "news@ratey.example", "one too many")
    assert (refused.mail.code, refused.mail.text.split(" ", 1)[0]) == (451, "4.7.1")
    assert "at most 100 per 5 minutes" in refused.mail.text and "retry in" in refused.mail.text

    relay.age_rate_windows(301)
    retry = send(relay.port, "news@ratey.example", ["bob@example.org"], data, client_addr=SERVER)
    assert retry.accepted, retry
    assert len(relay.sink.wait_for_message_id(message_id(data))) == 1
    relay.age_rate_windows(301)  # leave an empty window to the next test


def test_11th_unknown_sender_message_is_451(relay: Relay) -> None:
    for i in range(10):
        _, result = send_one(relay.port, "someone@elsewhere.example", f"unknown {i}")
        assert result.accepted, (i, result)
    _, refused = send_one(relay.port, "someone@elsewhere.example", "one too many")
    assert (refused.mail.code, refused.mail.text.split(" ", 1)[0]) == (451, "4.7.1")
    assert "unknown senders" in refused.mail.text
    _, known = send_one(relay.port, "news@ratey.example", "known still flows")
    assert known.accepted


# Two relay nodes, one PostgreSQL -----------------------------------------------------


# 50 refusals in a burst would otherwise break the usage rule (20 per hour) and
# make the server verdacht, with its 10-per-window limit, before the retries.
PATIENT = "[reputation]\nusage_refusals = 1000\n"


@pytest.fixture(scope="module")
def two_nodes(pg_server_url: str) -> Iterator[tuple[Relay, Relay]]:
    with running_relay(pg_server_url, name="osf-node-a", milter_config=PATIENT) as node_a:
        node_a.register("fleet", "free", domains=("fleet.example",), servers=(SERVER,))
        with running_relay(
            pg_server_url, reset=False, name="osf-node-b", milter_config=PATIENT
        ) as node_b:
            yield node_a, node_b


@pytest.mark.postgres
def test_two_nodes_share_one_window_exactly(two_nodes: tuple[Relay, Relay]) -> None:
    node_a, node_b = two_nodes
    messages = [
        make_message("news@fleet.example", ["bob@example.org"], f"fleet {i}", "Hello.\r\n")
        for i in range(150)
    ]

    def deliver(job: tuple[bytes, Relay]) -> Result:
        data, node = job
        return send(node.port, "news@fleet.example", ["bob@example.org"], data, client_addr=SERVER)

    jobs = list(zip(messages, itertools.cycle([node_a, node_b]), strict=False))
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deliver, jobs))
    accepted = [job for job, r in zip(jobs, results, strict=True) if r.accepted]
    refused = [job for job, r in zip(jobs, results, strict=True) if not r.accepted]
    assert len(accepted) == 100
    assert all(
        (r.mail.code, r.mail.text.split(" ", 1)[0]) == (451, "4.7.1")
        for r in results
        if not r.accepted
    )

    node_a.age_rate_windows(301)
    with ThreadPoolExecutor(max_workers=20) as pool:
        retried = list(pool.map(deliver, refused))
    assert all(r.accepted for r in retried)

    def delivered(mid: str) -> int:
        return node_a.sink.count_message_id(mid) + node_b.sink.count_message_id(mid)

    node_a.sink.wait_for(
        lambda _: sum(delivered(message_id(m)) for m in messages) >= 150, timeout=60
    )
    node_b.sink.wait_for(
        lambda _: sum(delivered(message_id(m)) for m in messages) >= 150, timeout=60
    )
    assert [delivered(message_id(m)) for m in messages] == [1] * 150

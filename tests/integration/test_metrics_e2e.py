"""The Prometheus endpoint of a running milter, scraped after a known sequence of mail."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.ports import free_port
from tests.harness.smtpclient import make_message, send
from tests.integration.conftest import Relay, running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.60"


@pytest.fixture(scope="module")
def metrics_relay() -> Iterator[tuple[Relay, str]]:
    scratch = Path(tempfile.mkdtemp(prefix="osfmet-", dir="/tmp"))
    port = free_port()
    try:
        with running_relay(
            f"sqlite:///{scratch}/m.sqlite3",
            name="osf-metrics",
            milter_config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
            "[plans.free]\nrate_known = 100000\n",
        ) as relay:
            relay.register("metered", "free", domains=("metered.example",), servers=(SERVER,))
            yield relay, f"http://127.0.0.1:{port}/metrics"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_after_a_known_sequence(metrics_relay: tuple[Relay, str]) -> None:
    relay, url = metrics_relay
    accepted = make_message("a@metered.example", ["b@example.org"], "one", "x" * 1000)
    assert send(
        relay.port, "a@metered.example", ["b@example.org"], accepted, client_addr=SERVER
    ).accepted
    refused = send(
        relay.port, "a@metered.example", ["b@example.org"], accepted, client_addr="198.51.100.99"
    )
    assert refused.mail.code == 550
    rcpts = [f"r{i}@example.org" for i in range(6)]
    unknown = make_message("x@elsewhere.example", rcpts, "two", "hi")
    assert send(relay.port, "x@elsewhere.example", rcpts, unknown, client_addr=SERVER).accepted

    values = samples(scrape(url))
    assert (
        values[("osfmilter_decisions_total", (("action", "accept"), ("reason", "accepted")))] == 2
    )
    assert (
        values[("osfmilter_decisions_total", (("action", "reject"), ("reason", "relay_denied")))]
        == 1
    )
    assert (
        values[
            ("osfmilter_decisions_total", (("action", "tempfail"), ("reason", "recipient_limit")))
        ]
        == 1
    )
    assert values[("osfmilter_accepted_messages_total", ())] == 2
    assert values[("osfmilter_accepted_bytes_total", ())] >= len(accepted) + 5 * len(unknown)
    assert values[("osfmilter_servers", (("state", "veilig"),))] == 1
    assert values[("osfmilter_backend_up", (("backend", "database"),))] == 1
    assert values[("osfmilter_callback_duration_seconds_count", (("stage", "mail"),))] >= 3
    assert ("osfmilter_build_info", (("version", "0.1.0"),)) in values


def test_many_distinct_senders_and_recipients_add_no_series(
    metrics_relay: tuple[Relay, str],
) -> None:
    relay, url = metrics_relay
    before = set(samples(scrape(url)))

    def deliver(i: int) -> bool:
        sender, rcpt = f"user{i}@metered.example", f"someone{i}@dest{i}.example"
        data = make_message(sender, [rcpt], f"n{i}", "hi")
        return send(relay.port, sender, [rcpt], data, client_addr=SERVER).accepted

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(deliver, range(1000)))
    assert set(samples(scrape(url))) == before


def test_promtool_accepts_the_exposition(metrics_relay: tuple[Relay, str]) -> None:
    _, url = metrics_relay
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=scrape(url).encode(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

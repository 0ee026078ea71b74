"""``osfmilter health`` and ``/healthz`` against real backends, stopped and started.

clamd, spamd, a DNS server and Redis (the machine's, on 127.0.0.1:6379) are
real; the database is a migrated SQLite file.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from osfmilter.cli import main
from osfmilter.config import load_config
from osfmilter.metrics import Metrics
from osfmilter.probes import CachedProbes, probe_all
from tests.harness.clamd import ClamdProcess
from tests.harness.dnsserver import DnsServer
from tests.harness.ports import free_port
from tests.harness.spamd import SpamdProcess

pytestmark = pytest.mark.integration

ZONE = "example.org. 60 IN SOA ns.example.org. root.example.org. 1 60 60 60 60\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


@pytest.fixture
def config_path(tmp_path: Path, clamd: ClamdProcess, spamd: SpamdProcess, dns: DnsServer) -> Path:
    path = tmp_path / "osfmilter.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n'
        f'[clamav]\naddress = "{clamd.socket_path}"\n'
        f'[spam]\nbackend = "spamassassin"\naddress = "{spamd.address}"\n'
        f'[spf]\noutbound_ips = ["192.0.2.1"]\nnameservers = ["{dns.nameserver}"]\n'
        '[rates]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n'
    )
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    return path


def health(
    config_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, dict[str, object]]]:
    status = main(["--config", str(config_path), "health", "--json", "--timeout", "2", *extra])
    document = json.loads(capsys.readouterr().out)
    return status, {b["backend"]: b for b in document["backends"]}


def test_every_configured_backend_answers_and_the_exit_status_is_0(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, backends = health(config_path, capsys)
    assert status == 0, backends
    assert list(backends) == ["database", "clamav", "spamassassin", "dns", "redis"]
    for backend in backends.values():
        assert backend["state"] == "up"
        assert isinstance(backend["latency_ms"], float) and backend["latency_ms"] >= 0


def test_the_text_form_is_one_line_per_backend(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_path), "health"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["database", "up"],
        ["clamav", "up"],
        ["spamassassin", "up"],
        ["dns", "up"],
        ["redis", "up"],
    ]
    assert all(" ms " in line for line in lines)


def test_clamd_stopped_is_down_and_exit_1_then_up_again_once_started(
    config_path: Path, clamd: ClamdProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    clamd.stop()
    try:
        status, backends = health(config_path, capsys)
        assert status == 1
        assert backends["clamav"]["state"] == "down"
        assert backends["clamav"]["latency_ms"] is None
        assert str(clamd.socket_path) in str(backends["clamav"]["detail"])
        # The others are probed all the same.
        assert {name for name, b in backends.items() if b["state"] == "up"} == {
            "database",
            "spamassassin",
            "dns",
            "redis",
        }
    finally:
        clamd.start()
    status, backends = health(config_path, capsys)
    assert status == 0 and backends["clamav"]["state"] == "up"


def test_a_frozen_clamd_is_down_within_the_timeout(
    config_path: Path, clamd: ClamdProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    clamd.pause()
    try:
        status, backends = health(config_path, capsys, "--timeout", "0.5")
    finally:
        clamd.resume()
    assert status == 1
    assert "no answer within 0.5 s" in str(backends["clamav"]["detail"])


def test_backends_not_configured_are_off_and_never_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bare.toml"
    path.write_text(f'state_dir = "{tmp_path}"\n')
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    capsys.readouterr()
    status, backends = health(path, capsys)
    assert status == 0
    assert {name: b["state"] for name, b in backends.items()} == {
        "database": "up",
        "clamav": "off",
        "spam": "off",
        "dns": "off",
        "redis": "off",
    }


def test_a_database_that_refuses_is_down_without_its_password(tmp_path: Path) -> None:
    path = tmp_path / "pg.toml"
    port = free_port()  # nothing listens there
    path.write_text(f'[database]\nurl = "postgresql://osf:s3cret@127.0.0.1:{port}/osf"\n')
    [database, *_] = probe_all(load_config(str(path)), timeout=2)
    assert database.state == "down"
    assert "s3cret" not in database.detail and "***" in database.detail


def test_healthz_on_the_metrics_endpoint_follows_clamd(
    config_path: Path, clamd: ClamdProcess
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    metrics = Metrics()
    metrics.serve(listen, health=CachedProbes(load_config(str(config_path)), ttl=0, timeout=2))

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{listen}{path}", timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()

    status, body = get("/healthz")
    assert status == 200 and json.loads(body)["healthy"] is True
    clamd.stop()
    try:
        status, body = get("/healthz")
        document = json.loads(body)
        assert status == 503 and document["healthy"] is False
        [clamav] = [b for b in document["backends"] if b["backend"] == "clamav"]
        assert clamav["state"] == "down"
    finally:
        clamd.start()
    assert get("/healthz")[0] == 200
    status, body = get("/metrics")
    assert status == 200 and b"osfmilter_build_info" in body

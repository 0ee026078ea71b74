"""Prometheus metrics: what the milter decided, how fast, and whether its backends answer.

No label carries an address, a domain or a customer: label values come from
fixed sets (actions, reasons, stages, scanners, states), so the number of
series is bounded whatever the mail. Each Metrics object has its own
registry, so tests (and several milters in one process) never share counters.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from osfmilter import __version__
from osfmilter.addresses import parse_host_port
from osfmilter.model import ServerState

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

# Milter callbacks take milliseconds; scans up to the scanner timeout.
CALLBACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SCAN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.decisions = Counter(
            "osfmilter_decisions",
            "Decisions made, by action and reason.",
            ["action", "reason"],
            registry=registry,
        )
        self.accepted_messages = Counter(
            "osfmilter_accepted_messages", "Messages accepted for relaying.", registry=registry
        )
        self.accepted_bytes = Counter(
            "osfmilter_accepted_bytes",
            "Bytes of accepted messages, counted once per recipient.",
            registry=registry,
        )
        self.callback_seconds = Histogram(
            "osfmilter_callback_duration_seconds",
            "Time spent in a milter callback, by stage.",
            ["stage"],
            buckets=CALLBACK_BUCKETS,
            registry=registry,
        )
        self.scan_seconds = Histogram(
            "osfmilter_scan_duration_seconds",
            "Time one scanner took for one message.",
            ["scanner"],
            buckets=SCAN_BUCKETS,
            registry=registry,
        )
        self.spf_results = Counter(
            "osfmilter_spf_results",
            "SPF results of checked messages.",
            ["result"],
            registry=registry,
        )
        self.dkim_signatures = Counter(
            "osfmilter_dkim_signatures",
            "Accepted messages the relay DKIM-signed, per algorithm.",
            ["algorithm"],
            registry=registry,
        )
        self.dkim_failures = Counter(
            "osfmilter_dkim_failures",
            "Messages left unsigned although they should be signed: the key could not be "
            "loaded (key) or the signature not made (sign).",
            ["step"],
            registry=registry,
        )
        self.fail_open = Counter(
            "osfmilter_fail_open",
            'Accepted messages let through although a backend failed (on_error = "accept").',
            ["backend"],
            registry=registry,
        )
        self.connections = Gauge(
            "osfmilter_connections_active",
            "SMTP connections the milter is handling.",
            registry=registry,
        )
        build = Gauge(
            "osfmilter_build_info", "The running osfmilter version.", ["version"], registry=registry
        )
        build.labels(__version__).set(1)

    def observe_backends(self, health: Callable[[], Mapping[str, bool]]) -> None:
        self.registry.register(_BackendCollector(health))

    def observe_states(
        self, count_states: Callable[[], Mapping[str, int]], max_age: float = 10.0
    ) -> None:
        self.registry.register(_StateCollector(count_states, max_age))

    def serve(self, listen: str, health: Callable[[], tuple[bool, object]] | None = None) -> None:
        """``/metrics`` (any other path too, as prometheus_client does), and with
        ``health`` (healthy, its JSON document) ``/healthz``: 200 or 503."""
        host, port = parse_host_port(listen)
        metrics = make_wsgi_app(self.registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if health is None or environ.get("PATH_INFO") != "/healthz":
                answer: Iterable[bytes] = metrics(environ, start_response)
                return answer
            ok, document = health()
            body = json.dumps(document).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [body]

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
        server: WSGIServer = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s/metrics%s", listen, ", health on /healthz" if health else "")

    def time_callback(self, stage: str) -> _Timer:
        return _Timer(self.callback_seconds.labels(stage))


class _QuietHandler(WSGIRequestHandler):
    """No access line per scrape on stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Timer:
    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.histogram.observe(time.perf_counter() - self.started)


class _BackendCollector(Collector):
    """osfmilter_backend_up{backend}: 1 while a backend answers, 0 after it failed."""

    def __init__(self, health: Callable[[], Mapping[str, bool]]) -> None:
        self.health = health

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "osfmilter_backend_up",
            "1 if the backend answered its last request, else 0.",
            labels=["backend"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for backend, up in sorted(self.health().items()):
            family.add_metric([backend], 1.0 if up else 0.0)
        yield family


class _StateCollector(Collector):
    """osfmilter_servers{state}, read from the database at most every ``max_age`` seconds."""

    def __init__(self, count: Callable[[], Mapping[str, int]], max_age: float) -> None:
        self.count = count
        self.max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[float, Mapping[str, int]] | None = None

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "osfmilter_servers",
            "Registered sender identities (servers and SASL accounts) by state.",
            labels=["state"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without this the registry would call collect() (a query) on registration.
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.max_age:
                try:
                    self._cached = (now, self.count())
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
                    log.warning("servers per state not read: %s", exc)
            counts = self._cached[1] if self._cached else {}
        family = self._family()
        for state in ServerState:
            family.add_metric([state.value], float(counts.get(state.value, 0)))
        yield family

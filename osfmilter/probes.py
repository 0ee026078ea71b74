"""``osfmilter health`` and ``/healthz``: does each configured backend answer, and how fast?

One probe per backend the configuration uses: the database (``SELECT 1``),
clamd (``PING``), the spam engine (spamd's ``PING``, rspamd's ``/ping``),
the resolvers SPF asks (a query for the root's NS records: any answer,
NXDOMAIN included, proves the resolver answers) and Redis (``PING``) when
it keeps the rate windows. A backend the configuration does not use is
``off`` and never makes the whole unhealthy. The probes run at once, each
within the timeout, so the whole takes as long as the slowest one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.resolver
import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from osfmilter.config import Config
from osfmilter.errors import OsfError
from osfmilter.scanners.clamav import ClamavScanner
from osfmilter.scanners.rspamd import RspamdScanner
from osfmilter.scanners.spamassassin import SpamassassinScanner
from osfmilter.spf.checker import resolver_for
from osfmilter.storage.db import Access, make_engine, safe_url

State = Literal["up", "down", "off"]
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Probe:
    """What one backend answered: its state, how long it took (seconds), and what it is."""

    backend: str
    state: State
    latency: float | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        latency = None if self.latency is None else round(self.latency * 1000, 3)
        return {
            "backend": self.backend,
            "state": self.state,
            "latency_ms": latency,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class _Check:
    backend: str
    target: str  # what is asked, for the line; never a password
    ask: Callable[[float], None]  # raises when the backend does not answer well


def healthy(probes: Sequence[Probe]) -> bool:
    """True when every configured backend answered."""
    return all(p.state != "down" for p in probes)


def probe_all(config: Config, timeout: float = DEFAULT_TIMEOUT) -> list[Probe]:
    """Every backend of the configuration, in a fixed order, probed at once."""
    checks, off = _checks(config)
    with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        answers = pool.map(lambda check: _run(check, timeout), checks)
        done = {probe.backend: probe for probe in answers}
    done.update({backend: Probe(backend, "off", None, why) for backend, why in off})
    return [done[backend] for backend in ORDER if backend in done]


ORDER = ("database", "clamav", "spamassassin", "rspamd", "spam", "dns", "redis")


def _run(check: _Check, timeout: float) -> Probe:
    started = time.monotonic()
    try:
        check.ask(timeout)
    except Exception as exc:  # noqa: BLE001 - whatever the client library raises, it is down
        # Scanners' errors name their address already.
        problem = _one_line(exc).removeprefix(f"{check.target}: ")
        return Probe(check.backend, "down", None, f"{check.target}: {problem}")
    return Probe(check.backend, "up", time.monotonic() - started, check.target)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _checks(config: Config) -> tuple[list[_Check], list[tuple[str, str]]]:
    checks = [_database(config)]
    off: list[tuple[str, str]] = []
    if config.clamav.address:
        checks.append(_clamav(config.clamav.address))
    else:
        off.append(("clamav", "not configured ([clamav] address is empty)"))
    if config.spam.backend == "none":
        off.append(("spam", 'not configured ([spam] backend = "none")'))
    else:
        checks.append(_spam(config.spam.backend, config.spam.address))
    if config.spf.outbound_ips:
        checks.append(_dns(config.spf.nameservers))
    else:
        off.append(("dns", "SPF is off ([spf] outbound_ips is empty)"))
    if config.rates.backend == "redis":
        checks.append(_redis(config.rates.redis_url))
    else:
        off.append(("redis", 'not used ([rates] backend = "sql")'))
    return checks, off


def _database(config: Config) -> _Check:
    url = config.database_url

    def ask(timeout: float) -> None:
        # READ_ONLY: a probe never creates the SQLite file nor writes.
        engine = make_engine(url, min(timeout, config.database.timeout), Access.READ_ONLY)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            # SQLAlchemy's text carries the statement and a link; the driver's line is enough.
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise OsfError(_one_line(cause)) from None
        finally:
            engine.dispose()

    return _Check("database", safe_url(url), ask)


def _clamav(address: str) -> _Check:
    return _Check("clamav", address, ClamavScanner(address).ping)


def _spam(backend: str, address: str) -> _Check:
    if backend == "spamassassin":
        return _Check(backend, address, SpamassassinScanner(address).ping)
    return _Check(backend, address, RspamdScanner(address).ping)


def _dns(nameservers: Sequence[str]) -> _Check:
    def ask(timeout: float) -> None:
        resolver = resolver_for(nameservers, timeout)
        try:
            resolver.resolve(".", "NS", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return  # an answer all the same
        except dns.exception.Timeout:
            raise OsfError(f"no answer within {timeout:g} s") from None
        except dns.resolver.NoNameservers:
            raise OsfError("every resolver failed the query (SERVFAIL or REFUSED)") from None

    return _Check("dns", ", ".join(nameservers) or "the system's resolvers", ask)


def _redis(url: str) -> _Check:
    def ask(timeout: float) -> None:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()

    return _Check("redis", safe_url(url), ask)


def document(probes: Sequence[Probe]) -> dict[str, object]:
    """What ``health --json`` prints and ``/healthz`` answers."""
    return {"healthy": healthy(probes), "backends": [p.as_dict() for p in probes]}


class CachedProbes:
    """``/healthz``'s answer, probed at most once per ``ttl`` seconds.

    However often it is asked (a load balancer, a scrape, someone hammering
    the endpoint), the backends see at most one probe each per ``ttl``;
    callers that ask while a probe runs wait for it and share its answer.
    """

    def __init__(self, config: Config, ttl: float = 2.0, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self.ttl = ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._answer: tuple[bool, object] | None = None
        self._at = 0.0

    def __call__(self) -> tuple[bool, object]:
        with self._lock:
            now = time.monotonic()
            if self._answer is None or now - self._at >= self.ttl:
                probes = probe_all(self.config, self.timeout)
                self._answer = (healthy(probes), document(probes))
                self._at = time.monotonic()
            return self._answer

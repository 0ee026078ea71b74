"""``osfmilter run``: wire the services together and hand over to libmilter."""

from __future__ import annotations

import logging
import os

import Milter

from osfmilter import __version__
from osfmilter.adapter import FLAGS, OsfMilter
from osfmilter.clock import Clock, SystemClock
from osfmilter.config import Config, parse_socket
from osfmilter.decisionlog import DecisionLog
from osfmilter.errors import ConfigError
from osfmilter.limits.rate import RateLimiter
from osfmilter.limits.sqlrate import SqlRateLimiter
from osfmilter.session import Services
from osfmilter.storage.db import make_engine, safe_url, schema_status, upgrade
from osfmilter.storage.store import SqlStore

log = logging.getLogger(__name__)


def prepare_schema(config: Config, store: SqlStore) -> None:
    """The embedded SQLite database is created and upgraded on start; shared ones are not.

    Several relay nodes share a PostgreSQL database, so its schema changes only
    when an operator runs ``osfmilter db upgrade``.
    """
    current, head = schema_status(store.engine)
    if current == head:
        return
    if store.engine.dialect.name == "sqlite":
        log.info("upgrading the SQLite schema from %s to %s", current or "empty", head)
        upgrade(store.engine)
        return
    raise ConfigError(
        f"database {safe_url(config.database_url)} is at schema revision {current or 'none'}, "
        f"this version needs {head}: run 'osfmilter db upgrade'"
    )


def build_limiter(config: Config, store: SqlStore, clock: Clock) -> RateLimiter:
    rates = config.rates
    if rates.backend == "redis":
        from osfmilter.limits.redisrate import RedisRateLimiter

        log.info("rate windows in Redis at %s", safe_url(rates.redis_url))
        return RedisRateLimiter(rates.redis_url, clock, rates.window, rates.reservation_ttl,
                                timeout=config.database.timeout)
    return SqlRateLimiter(store.engine, clock, rates.window, rates.reservation_ttl)


def build_services(config: Config) -> Services:
    store = SqlStore(make_engine(config.database_url, config.database.timeout))
    prepare_schema(config, store)
    clock = SystemClock()
    return Services(
        config=config,
        directory=store,
        recorder=store,
        limiter=build_limiter(config, store, clock),
        clock=clock,
        decisions=DecisionLog(as_json=config.log.format == "json"),
        node=config.node,
    )


def run(config: Config) -> None:
    services = build_services(config)
    socket_spec = parse_socket(config.milter.socket)
    if socket_spec.family == "unix":
        # The MTA's group may connect; nobody else (libmilter honours the umask).
        os.umask(0o007)
    log.info(
        "osfmilter %s starting: mode=%s socket=%s database=%s node=%s",
        __version__, config.mode, config.milter.socket, safe_url(config.database_url),
        services.node,
    )
    log.info("metrics endpoint: %s", config.metrics.listen or "off")
    Milter.factory = lambda: OsfMilter(services)
    Milter.set_flags(FLAGS)
    Milter.runmilter("osfmilter", config.milter.socket, config.milter.timeout)
    log.info("osfmilter stopped")

"""``osfmilter run``: wire the services together and hand over to libmilter."""

from __future__ import annotations

import grp
import logging
import os
import signal
import socket
from pathlib import Path

import Milter
import milter as libmilter

from osfmilter import __version__
from osfmilter.clock import Clock, SystemClock
from osfmilter.config import Config, Mode, parse_socket
from osfmilter.decisionlog import DecisionLog
from osfmilter.dkim.keys import KeyFiles
from osfmilter.dkim.service import DkimService
from osfmilter.errors import ConfigError
from osfmilter.health import BackendHealth
from osfmilter.limits.rate import RateLimiter
from osfmilter.metrics import Metrics
from osfmilter.milter.adapter import FLAGS, OsfMilter
from osfmilter.probes import CachedProbes
from osfmilter.reputation.transitions import Rules
from osfmilter.scanners.clamav import ClamavScanner
from osfmilter.scanners.rspamd import RspamdScanner
from osfmilter.scanners.service import ConfiguredScanner, ScanService
from osfmilter.scanners.spamassassin import SpamassassinScanner
from osfmilter.session import Services
from osfmilter.spf.checker import SpfChecker, resolver_for
from osfmilter.storage.db import make_engine, prepare_schema, safe_url
from osfmilter.storage.ledger import AcceptLedger
from osfmilter.storage.rate import SqlRateLimiter
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.store import SqlStore

log = logging.getLogger(__name__)


def build_limiter(config: Config, store: SqlStore, clock: Clock) -> RateLimiter:
    rates = config.rates
    if rates.backend == "redis":
        from osfmilter.storage.redis_rate import RedisRateLimiter

        log.info("rate windows in Redis at %s", safe_url(rates.redis_url))
        return RedisRateLimiter(
            rates.redis_url,
            clock,
            rates.window,
            rates.reservation_ttl,
            timeout=config.database.timeout,
        )
    return SqlRateLimiter(store.engine, clock, rates.window, rates.reservation_ttl)


def build_scans(config: Config, health: BackendHealth) -> ScanService:
    """The configured scanners; one not configured is not called, and the log says so."""
    virus = spam = None
    if config.clamav.address:
        virus = ConfiguredScanner(ClamavScanner(config.clamav.address), config.clamav.timeout)
        log.info(
            "virus scanning: clamd at %s (on error: %s)",
            config.clamav.address,
            config.clamav.on_error,
        )
    elif config.mode is Mode.OUTBOUND:
        log.warning(
            "virus scanning is off ([clamav] address is empty): every message is "
            "relayed unscanned (fail-open; check-config refuses it unless [milter] "
            "fail_open_acknowledged = true)"
        )
    if config.spam.backend == "spamassassin":
        spam = ConfiguredScanner(SpamassassinScanner(config.spam.address), config.spam.timeout)
    elif config.spam.backend == "rspamd":
        spam = ConfiguredScanner(RspamdScanner(config.spam.address), config.spam.timeout)
    if spam is None:
        log.warning('spam scoring is off: [spam] backend is "none"')
    else:
        log.info(
            "spam scoring: %s at %s, reject at score %g (on error: %s)",
            config.spam.backend,
            config.spam.address,
            config.spam.reject_score,
            config.spam.on_error,
        )
    return ScanService(virus, spam, health)


def warn_about_mode(config: Config) -> None:
    """Inbound mode judges nothing: said loudly, since on the wrong listener it is an open relay."""
    if config.mode is Mode.INBOUND:
        log.warning(
            "INBOUND MODE: every message is accepted and only counted, nothing is authorized, "
            "limited or scanned. This instance must only be on the inbound relay's listener, "
            "where Postfix itself refuses relaying (reject_unauth_destination), NEVER on a "
            "listener customers send through: there it makes an open relay (check-config "
            "--postfix-config DIR checks the wiring)"
        )


def build_spf(config: Config) -> SpfChecker | None:
    settings = config.spf
    if not settings.outbound_ips:
        log.warning("SPF check is off: [spf] outbound_ips is empty")
        return None
    log.info(
        "SPF: evaluating senders' domains for %s (resolvers: %s, timeout %g s)",
        ", ".join(settings.outbound_ips),
        ", ".join(settings.nameservers) or "system",
        settings.timeout,
    )
    return SpfChecker(
        settings.outbound_ips,
        resolver_for(settings.nameservers, settings.timeout),
        settings.timeout,
        settings.cache_size,
        settings.cache_max_ttl,
    )


def build_signing(
    config: Config, store: SqlStore, metrics: Metrics, clock: Clock
) -> DkimService | None:
    if not config.dkim.sign:
        log.warning("DKIM signing is off: [dkim] sign = false")
        return None
    log.info("DKIM: signing verified domains with active keys from %s", config.dkim_key_path)
    return DkimService(store.registry, KeyFiles(config.dkim_key_path), metrics, clock)


def build_services(config: Config) -> Services:
    health = BackendHealth()
    store = SqlStore(make_engine(config.database_url, config.database.timeout), health)
    prepare_schema(store.engine, config.database_url)
    clock = SystemClock()
    metrics = Metrics()
    metrics.observe_backends(health.snapshot)
    metrics.observe_states(store.count_states)
    limiter = build_limiter(config, store, clock)
    return Services(
        config=config,
        directory=store,
        events=store,
        ledger=AcceptLedger(store, limiter),
        limiter=limiter,
        scans=build_scans(config, health),
        spf=build_spf(config),
        reputation=ReputationStore(store.engine, clock, Rules.from_config(config.reputation)),
        metrics=metrics,
        clock=clock,
        decisions=DecisionLog(as_json=config.log.format == "json"),
        node=config.node,
        signing=build_signing(config, store, metrics, clock),
    )


def prepare_socket_directory(directory: Path, group: str) -> None:
    """The unix socket comes out 0660, owned by ``group`` if one is configured.

    libmilter creates the socket itself, with the process's umask; a
    directory with the set-group-id bit hands its group down to it.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, a read-only file system
        raise ConfigError(
            f"[milter] socket: cannot create its directory {directory}: {exc.strerror or exc}"
        ) from None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"milter.socket_group: no group named {group!r}") from None
        try:
            os.chown(directory, -1, gid)
            directory.chmod(0o2750)
        except OSError as exc:
            raise ConfigError(
                f"milter.socket_group: cannot give {directory} to group {group!r}: "
                f"{exc.strerror or exc}"
            ) from None


def _open_socket_our_way() -> None:
    """Wrap the opensocket() Milter.runmilter calls: a 0660 unix socket, a TCP one without Nagle.

    libmilter creates a unix socket with the process's umask: 0o117 gives
    0660 there, and only there.

    A TCP socket gets TCP_NODELAY, which its accepted connections inherit
    (Linux): at the end of a message libmilter writes each header change
    and then the verdict as separate small packets, and Nagle held the
    verdict back until the MTA's delayed ACK of the header change, once per
    accepted message (bench/RESULTS.md, 'What made it faster'). libmilter
    has no option for it.
    """
    opensocket = libmilter.opensocket

    def opensocket_our_way(remove_stale: bool) -> object:
        before = _open_sockets()
        previous = os.umask(0o117)
        try:
            return opensocket(remove_stale)
        finally:
            os.umask(previous)
            for fd, _ in _open_sockets() - before:
                _no_delay_if_tcp_listener(fd)

    libmilter.opensocket = opensocket_our_way


def _open_sockets() -> set[tuple[int, str]]:
    """(descriptor, "socket:[inode]") of every socket this process has open."""
    found = set()
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = str(entry.readlink())
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith("socket:"):
            found.add((int(entry.name), target))
    return found


def _no_delay_if_tcp_listener(fd: int) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return  # not a socket (or gone)
    try:
        if (
            sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        ):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.detach()  # libmilter's descriptor: leave it open


def run(config: Config) -> None:
    services = build_services(config)
    socket_spec = parse_socket(config.milter.socket)
    if socket_spec.family == "unix":
        assert socket_spec.path is not None
        prepare_socket_directory(Path(socket_spec.path).parent, config.milter.socket_group)
    _open_socket_our_way()
    log.info(
        "osfmilter %s starting: mode=%s socket=%s database=%s node=%s",
        __version__,
        config.mode,
        config.milter.socket,
        safe_url(config.database_url),
        services.node,
    )
    warn_about_mode(config)
    # libmilter stops gracefully on SIGTERM, SIGHUP and SIGINT by taking them
    # in a thread of its own (sigwait). A thread that does not block them may
    # be handed one instead, and the default action kills the process with
    # transactions in flight: block them before any thread starts (the metrics
    # server's, libmilter's own), so that every thread inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGINT, signal.SIGTERM})
    if config.metrics.listen:
        services.metrics.serve(config.metrics.listen, health=CachedProbes(config))
    else:
        log.info("metrics endpoint is off: [metrics] listen is empty")
    Milter.factory = lambda: OsfMilter(services)
    Milter.set_flags(FLAGS)
    # Should an exception ever escape the adapter: tempfail, never accept.
    libmilter.set_exception_policy(Milter.TEMPFAIL)
    Milter.runmilter("osfmilter", config.milter.socket, config.milter.timeout)
    log.info("osfmilter stopped")

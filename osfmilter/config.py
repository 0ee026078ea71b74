"""The one typed configuration object, read from one TOML file.

Every key has a default, so ``osfmilter run`` works with no file at all;
unknown keys are errors, and an invalid value is reported in one line that
names the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from osfmilter.addresses import parse_host_port, split_host_port, split_nameserver
from osfmilter.errors import ConfigError

CONFIG_ENV = "OSFMILTER_CONFIG"

MB = 1_000_000
GB = 1_000_000_000

Count = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class SocketSpec:
    family: Literal["inet", "inet6", "unix"]
    port: int | None = None
    host: str | None = None
    path: str | None = None


def parse_socket(spec: str) -> SocketSpec:
    """Parse libmilter's socket syntax: inet:PORT@HOST, inet6:PORT@[HOST], unix:/path."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"{spec!r} is not inet:PORT@HOST, inet6:PORT@[HOST] or unix:/path")
    if kind in ("unix", "local"):
        if not rest.startswith("/"):
            raise ValueError(f"{spec!r}: a unix socket needs an absolute path")
        return SocketSpec(family="unix", path=rest)
    if kind not in ("inet", "inet6"):
        raise ValueError(f"{spec!r}: unknown socket type {kind!r}")
    port_text, _, host = rest.partition("@")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{spec!r}: port must be 1-65535")
    host = host.strip("[]") or ("::" if kind == "inet6" else "0.0.0.0")  # noqa: S104
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{spec!r}: {host!r} is not an IP address") from None
    else:
        if (address.version == 6) != (kind == "inet6"):
            raise ValueError(f"{spec!r}: address family does not match {kind}")
    return SocketSpec(family=kind, port=int(port_text), host=host)  # type: ignore[arg-type]


def _is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class PlanName(StrEnum):
    FREE = "free"
    PAID = "paid"


class PlanLimits(Section):
    """The numbers of one plan (docs/rules.rst, 'Limits per plan'); defaults: the free plan's."""

    max_message_size: Annotated[int, Field(gt=0)] = 52_428_800
    rate_known: Count = 100
    rate_unknown: Count = 10
    rate_suspicious: Count = 10
    max_recipients_known: Annotated[int, Field(gt=0)] = 50
    max_recipients_unknown: Annotated[int, Field(gt=0)] = 5
    monthly_volume_limited: bool = True
    monthly_volume_base: Count = GB
    inbound_volume_factor: Annotated[float, Field(ge=0)] = 2.0


PAID_DEFAULTS: dict[str, Any] = {
    "rate_known": 1000,
    "rate_unknown": 1000,
    "max_recipients_known": 500,
    "max_recipients_unknown": 500,
    "monthly_volume_limited": False,
}


class Plans(Section):
    free: PlanLimits = PlanLimits()
    paid: PlanLimits = PlanLimits(**PAID_DEFAULTS)

    @model_validator(mode="before")
    @classmethod
    def _paid_keys_default_to_paid_numbers(cls, data: Any) -> Any:
        # A partial [plans.paid] table must fill its gaps with the paid
        # plan's numbers, not with the class defaults (the free plan's).
        if isinstance(data, dict) and isinstance(data.get("paid"), dict):
            data = {**data, "paid": {**PAID_DEFAULTS, **data["paid"]}}
        return data

    def limits(self, plan: str) -> PlanLimits:
        return self.paid if plan == PlanName.PAID else self.free


class MilterSection(Section):
    socket: str = "inet:8894@127.0.0.1"
    # libmilter's I/O timeout towards the MTA, in seconds.
    timeout: Annotated[int, Field(gt=0)] = 600
    # Seconds the MTA waits for the answer to the end of a message (Postfix:
    # milter_content_timeout; Sendmail: the E: timeout). An end of message
    # that took longer is not accepted: the MTA has given up on it and told
    # the client 4xx, so the message will come again and must not count now.
    content_timeout: Annotated[float, Field(gt=0)] = 300.0
    # Binding a non-loopback address exposes the milter protocol to the network.
    allow_public_bind: bool = False
    # For a unix socket: the group that may connect (the MTA's, e.g. "postfix").
    # The socket is created 0660 in a directory that hands its group down.
    socket_group: str = ""
    # on_error = "accept", and in outbound mode an empty [clamav] address, let
    # unscanned mail through; check-config refuses such a configuration
    # unless this says it is meant.
    fail_open_acknowledged: bool = False

    @field_validator("socket")
    @classmethod
    def _socket_syntax(cls, value: str) -> str:
        parse_socket(value)
        return value

    @model_validator(mode="after")
    def _loopback_unless_opted_in(self) -> MilterSection:
        host = parse_socket(self.socket).host
        if host is not None and not self.allow_public_bind and not _is_loopback(host):
            raise ValueError(
                f"socket {self.socket!r} binds a non-loopback address; "
                "set milter.allow_public_bind = true to do that on purpose"
            )
        return self


# SQLAlchemy's URL grammar (sqlalchemy.engine.url._parse_url), up to the port:
# config imports no database package (policy imports config).
_DATABASE_URL = re.compile(
    r"""
        [\w+]+://
        (?:[^:/]*(?::[^@]*)?@)?
        (?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?
    """,
    re.X,
)


class DatabaseSection(Section):
    # Empty: an SQLite file in the state directory.
    url: str = ""
    # Seconds a statement (or SQLite's wait for a lock) may take before the
    # message is tempfailed.
    timeout: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("url")
    @classmethod
    def _url_syntax(cls, value: str) -> str:
        # Never the URL itself in the message: it may hold a password.
        if not value:
            return value
        match = _DATABASE_URL.match(value)
        if match is None:
            raise ValueError(
                "not a database URL (sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB)"
            )
        port = match["port"]
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError("its port is not a number from 1 to 65535")
        return value


class RatesSection(Section):
    """Where and how the 5-minute windows are counted."""

    # Seconds in the sliding window the plans' rate_* numbers apply to.
    window: Annotated[float, Field(gt=0)] = 300.0
    # How long a slot reserved at MAIL FROM is held for a transaction that
    # never ends (its milter died); then it is free again.
    reservation_ttl: Annotated[float, Field(gt=0)] = 900.0
    # "sql": the database above (every node sharing it sees one window);
    # "redis": one Redis for the whole fleet, at redis_url.
    backend: Literal["sql", "redis"] = "sql"
    redis_url: str = "redis://127.0.0.1:6379/0"


OnError = Literal["tempfail", "accept"]


def _host_port(value: str) -> bool:
    try:
        parse_host_port(value)
    except ValueError:
        return False
    return True


class ClamavSection(Section):
    """clamd, reached by INSTREAM; an empty address leaves virus scanning off."""

    # A unix socket path (/run/clamav/clamd.ctl) or HOST:PORT.
    address: str = ""
    timeout: Annotated[float, Field(gt=0)] = 60.0
    # What a clamd fault (down, timeout, garbage, message over its
    # StreamMaxLength) means: "tempfail" answers 451 4.7.1 and the customer's
    # queue retries; "accept" lets the message through unscanned.
    on_error: OnError = "tempfail"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not value.startswith("/") and not _host_port(value):
            raise ValueError(f"{value!r} is neither a unix socket path nor HOST:PORT")
        return value


class SpamSection(Section):
    """The spam scorer: SpamAssassin's spamd or rspamd."""

    backend: Literal["none", "spamassassin", "rspamd"] = "none"
    # spamassassin: HOST:PORT of spamd; rspamd: http://HOST:PORT (or HOST:PORT)
    # of its normal worker.
    address: str = ""
    # A score at or above this rejects the message with 550 5.7.1.
    reject_score: float = 10.0
    # Per-plan thresholds that replace reject_score, e.g. { paid = 12.0 }.
    plan_reject_scores: dict[PlanName, float] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0)] = 30.0
    on_error: OnError = "tempfail"
    # Larger messages are not scored (spam engines take seconds per MB, and
    # bulk spam is small); they are still virus-scanned.
    max_size: Annotated[int, Field(ge=0)] = 2_000_000

    @model_validator(mode="after")
    def _address_for_backend(self) -> SpamSection:
        if self.backend == "none":
            return self
        if not self.address:
            raise ValueError(f"backend {self.backend!r} needs an address")
        valid = _host_port(self.address.removeprefix("http://").rstrip("/"))
        if not valid or (self.backend == "spamassassin" and "://" in self.address):
            raise ValueError(f"address {self.address!r} does not suit backend {self.backend!r}")
        return self

    def reject_score_for(self, plan: str) -> float:
        return self.plan_reject_scores.get(PlanName(plan), self.reject_score)


class SpfSection(Section):
    """SPF of the customers' domains, evaluated for the relay's own outbound addresses."""

    # The addresses the relay sends from (IPv4 and IPv6). Empty: no SPF check.
    outbound_ips: list[str] = Field(default_factory=list)
    # The operator's include domain, which customers add to their SPF record
    # (the advisor suggests "v=spf1 include:<this> -all").
    include: str = ""
    # Resolvers to ask ("IP" or "IP:PORT", "[IPv6]:PORT"); empty: the system's.
    nameservers: list[str] = Field(default_factory=list)
    # Seconds for one whole check, every outbound IP and lookup included.
    timeout: Annotated[float, Field(gt=0)] = 3.0
    # "fail": reject (550 5.7.23), tempfail (451 4.7.24) or record (accept).
    on_fail: Literal["reject", "tempfail", "record"] = "reject"
    on_temperror: Literal["tempfail", "record"] = "tempfail"
    # permerror (a broken record, e.g. more than 10 DNS lookups).
    on_permerror: Literal["record", "tempfail", "reject"] = "record"
    # Bounds of the result cache (entries live for the record's TTL, at most max_ttl).
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    cache_max_ttl: Annotated[float, Field(ge=0)] = 3600.0

    @field_validator("outbound_ips")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_address(value)
        return values

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                split_nameserver(value)
            except ValueError:
                raise ValueError(f"{value!r} is not IP, IP:PORT or [IPv6]:PORT") from None
        return values


class DomainsSection(Section):
    """Who may send as a domain (docs/domains.rst)."""

    # A sender in another customer's verified domain is refused (550 5.7.1);
    # false: treated as an unknown sender, with the lower limits, as before.
    refuse_foreign: bool = True


class DkimSection(Section):
    """DKIM signing of the customers' verified domains (docs/dkim.rst, 'Settings')."""

    # Sign accepted mail of a verified domain that has an active key.
    sign: bool = True
    # The private keys, one file per domain and selector, readable by the
    # milter's user only; empty: <state_dir>/dkim.
    key_dir: str = ""
    # How long a rotated-out key stays published (and listed by dkim show).
    rotation_grace_days: Annotated[int, Field(ge=0)] = 7


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # Decision lines as key=value text or as one JSON object each.
    format: Literal["text", "json"] = "text"
    # "stderr" (journald under systemd) or "syslog".
    target: Literal["stderr", "syslog"] = "stderr"
    syslog_address: str = "/dev/log"
    syslog_facility: Literal[
        "mail",
        "daemon",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ] = "mail"

    @field_validator("syslog_address")
    @classmethod
    def _syslog_address(cls, value: str) -> str:
        # Checked here so that a bad one is a config error, not a failure at start.
        if not value.startswith("/") and not _host_port(value):
            raise ValueError(f"{value!r} is neither a unix socket path nor HOST:PORT")
        return value


class MetricsSection(Section):
    """The Prometheus endpoint (each milter process needs a port of its own)."""

    # HOST:PORT, e.g. "127.0.0.1:9899"; empty switches the endpoint off.
    listen: str = ""
    # Serving metrics on a non-loopback address needs this set on purpose.
    allow_public_bind: bool = False

    @model_validator(mode="after")
    def _listen(self) -> MetricsSection:
        if not self.listen:
            return self
        try:
            address = ipaddress.ip_address(split_host_port(self.listen)[0])
        except ValueError:
            raise ValueError(f"listen {self.listen!r} is not IP:PORT") from None
        if not _host_port(self.listen):
            raise ValueError(f"listen {self.listen!r}: port must be 1-65535")
        if not address.is_loopback and not self.allow_public_bind:
            raise ValueError(
                f"listen {self.listen!r} is not loopback; "
                "set metrics.allow_public_bind = true to do that on purpose"
            )
        return self


class WebSection(Section):
    """``osfmilter web``: the JSON API and the portal, behind a TLS reverse proxy."""

    # IP:PORT, e.g. "127.0.0.1:8025" or "[::1]:8025".
    listen: str = "127.0.0.1:8025"
    # Serving the API on a non-loopback address needs this set on purpose.
    allow_public_bind: bool = False
    # A portal login lasts at most this long, and ends after this long unused.
    session_hours: Annotated[int, Field(ge=1, le=720)] = 12
    session_idle_minutes: Annotated[int, Field(ge=5, le=43200)] = 60
    # Mark the portal's cookies Secure even when the request came in as plain
    # HTTP: set it behind a TLS reverse proxy (they are Secure over https anyway).
    cookie_secure: bool = False
    # Requests per minute one API token may make, and one address without a
    # valid token (so that guessing tokens is throttled too); in memory, per
    # process. Past either: 429 with Retry-After.
    api_requests_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = 600
    api_unauthenticated_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = 60
    # The reverse proxies in front (IP addresses or networks) whose
    # X-Forwarded-For and X-Forwarded-Proto are believed: the client's address
    # (login throttle, audit log) and https then come from them. Empty: none.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _listen(self) -> WebSection:
        try:
            host, _ = parse_host_port(self.listen)
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"listen {self.listen!r} is not IP:PORT with a port 1-65535") from None
        if not address.is_loopback and not self.allow_public_bind:
            raise ValueError(
                f"listen {self.listen!r} is not loopback; "
                "set web.allow_public_bind = true to do that on purpose"
            )
        if self.session_idle_minutes > self.session_hours * 60:
            raise ValueError(
                f"session_idle_minutes {self.session_idle_minutes} is longer than "
                f"session_hours {self.session_hours}: a session ends before it can idle out"
            )
        return self


class RegistrationSection(Section):
    """Which networks the administration CLI lets anyone register."""

    min_prefix_ipv4: Annotated[int, Field(ge=1, le=32)] = 16
    min_prefix_ipv6: Annotated[int, Field(ge=1, le=128)] = 48
    # Private, loopback, link-local, NAT64, 6to4 ... networks are refused
    # (osfmilter.registration): every host behind such an address would
    # relay as the customer. True for a relay whose customers really are on
    # a private network (a demo, a test set-up).
    allow_non_global: bool = False


class RepliesSection(Section):
    """Texts that tell a refused customer what to do."""

    register_hint: str = "register this server in the portal under SMTP servers > Add"
    contact: str = "contact support"
    # After "the sender domain x is registered to another customer; to send as it, "
    domain_hint: str = "add it to your own account in the portal under Domains > Add and verify it"

    @field_validator("register_hint", "contact", "domain_hint")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n%"):
            raise ValueError("must be one line without '%'")
        return value


class ReputationSection(Section):
    """When an identity becomes verdacht, recovers, or is blocked (docs/states.rst, 'Settings')."""

    # A verdacht identity is veilig again this long after its last incident.
    recovery_hours: Annotated[float, Field(gt=0)] = 48.0
    # More than this many limit refusals (rate, volume, another customer's domain)
    # within an hour are a usage incident.
    usage_refusals: Count = 20
    # Block (onveilig) on auto_block_detections spam/virus detections within
    # auto_block_window_hours; false leaves blocking to operators.
    auto_block: bool = True
    auto_block_detections: Annotated[int, Field(gt=0)] = 50
    auto_block_window_hours: Annotated[float, Field(gt=0)] = 24.0


class BillingSection(Section):
    """The paid plan's price (docs/rules.rst, 'Price'), for ``osfmilter report bill``.

    Whole units of currency.
    """

    currency: str = "EUR"
    # A paid customer's month costs paid_base_price, which includes
    # paid_included_bytes of outbound volume; every started gb beyond that
    # costs paid_price_per_started_gb more.
    paid_base_price: Count = 10
    paid_included_bytes: Count = GB
    paid_price_per_started_gb: Count = 10
    gb: Annotated[int, Field(gt=0)] = GB


class Config(Section):
    mode: Mode = Mode.OUTBOUND
    # Where the embedded SQLite database lives; empty: $STATE_DIRECTORY,
    # /var/lib/osfmilter for root, else ~/.local/state/osfmilter.
    state_dir: str = ""
    # Recorded with every event so an operator knows which relay decided;
    # empty: the host name.
    node_name: str = ""
    milter: MilterSection = MilterSection()
    database: DatabaseSection = DatabaseSection()
    rates: RatesSection = RatesSection()
    clamav: ClamavSection = ClamavSection()
    spam: SpamSection = SpamSection()
    spf: SpfSection = SpfSection()
    domains: DomainsSection = DomainsSection()
    dkim: DkimSection = DkimSection()
    log: LogSection = LogSection()
    metrics: MetricsSection = MetricsSection()
    plans: Plans = Plans()
    registration: RegistrationSection = RegistrationSection()
    replies: RepliesSection = RepliesSection()
    reputation: ReputationSection = ReputationSection()
    billing: BillingSection = BillingSection()
    web: WebSection = WebSection()

    @property
    def state_path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        if systemd_dir := os.environ.get("STATE_DIRECTORY"):
            return Path(systemd_dir.split(":")[0])
        if os.geteuid() == 0:
            return Path("/var/lib/osfmilter")
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(xdg) / "osfmilter"

    @property
    def dkim_key_path(self) -> Path:
        return Path(self.dkim.key_dir) if self.dkim.key_dir else self.state_path / "dkim"

    @property
    def node(self) -> str:
        return self.node_name or socket.gethostname()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.state_path / 'osfmilter.sqlite3'}"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config; ``None`` means $OSFMILTER_CONFIG or defaults."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return Config()
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 TOML") from None
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"] if part != "__root__")
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"key {key!r}: {message}" if key else message

"""``osfmilter check-config``: catch settings that would lose or leak mail, before start.

The systemd unit runs it as ExecStartPre. It refuses fail-open settings unless
acknowledged, a Postfix that would answer before the milter or let mail past
a dead milter, and a clamd that would refuse or half-scan the messages the
milter lets through.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from osfmilter.addresses import parse_host_port
from osfmilter.config import Config, Mode, SocketSpec, parse_socket

# osfmilter streams to clamd exactly the bytes its size limit counts: the
# message as the MTA handed it over (already encoded: base64 attachments are
# in the count), headers and Postfix's own Received: line included. It adds
# nothing to the stream (its X-Osfmilter header comes after the scan), so
# clamd's StreamMaxLength needs the plans' limit itself; one clamd size unit
# (1M) of headroom keeps the largest message off the edge.
STREAM_MARGIN = 1024**2
CLAMD_CONFIG = Path("/etc/clamav/clamd.conf")
SYSTEM_POSTFIX = Path("/etc/postfix/main.cf")
# clamd's limits where its config does not set them (older defaults; ClamAV 1.x raised some).
CLAMD_DEFAULTS = {
    "StreamMaxLength": 25 * 1024**2,
    "MaxFileSize": 25 * 1024**2,
    "MaxScanSize": 100 * 1024**2,
}
_SIZE = re.compile(r"^(\d+)\s*([kKmMgG]?)$")
_CLAMD_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error", "warning" or "ok"
    subject: str
    text: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.text}"


def lint(
    config: Config, postfix_dir: str | None = None, clamd_config: Path | None = None
) -> list[Finding]:
    findings = fail_open(config)
    findings += reservation_lifetime(config)
    findings += postfix(config, postfix_dir)
    if config.clamav.address:
        findings += clamd(config, clamd_config or CLAMD_CONFIG, explicit=clamd_config is not None)
    elif clamd_config is not None:
        findings += clamd_unused(clamd_config)
    return findings


def largest_message(config: Config) -> int:
    return max(config.plans.free.max_message_size, config.plans.paid.max_message_size)


def fail_open(config: Config) -> list[Finding]:
    """Settings that relay mail unscanned: errors unless [milter] fail_open_acknowledged."""
    problems = []
    if config.mode is Mode.OUTBOUND and not config.clamav.address:
        # Not calling clamd at all is the widest fail-open of all: every
        # message, not only those that meet a clamd outage.
        problems.append(
            (
                "[clamav] address",
                "empty: virus scanning is off, so every message "
                "is relayed unscanned (give clamd's socket, e.g. /run/clamav/clamd.ctl)",
            )
        )
    for name, configured, on_error in (
        ("clamav", bool(config.clamav.address), config.clamav.on_error),
        ("spam", config.spam.backend != "none", config.spam.on_error),
    ):
        if configured and on_error == "accept":
            problems.append(
                (
                    f"[{name}] on_error",
                    '"accept" lets mail through unscanned while the scanner is down',
                )
            )
    acknowledged = config.milter.fail_open_acknowledged
    return [
        Finding(
            "warning" if acknowledged else "error",
            subject,
            text
            + (
                ""
                if acknowledged
                else "; set [milter] fail_open_acknowledged = true if that is meant"
            ),
        )
        for subject, text in problems
    ]


def reservation_lifetime(config: Config) -> list[Finding]:
    """A rate reservation should outlive the transactions the MTA's timeouts allow.

    Between MAIL and the end of the message the milter waits up to [milter]
    timeout for each next command (a slow client, a long DATA), then up to
    content_timeout for its own end of message. A transaction that outlives
    its reservation is admitted again at the end (limits.rate), and is
    tempfailed if the window filled meanwhile: correct, but a retry.
    """
    longest = config.milter.timeout + config.milter.content_timeout
    ttl = config.rates.reservation_ttl
    if ttl >= longest:
        return []
    return [
        Finding(
            "warning",
            "[rates] reservation_ttl",
            f"{ttl:g} s is shorter than a transaction may last ([milter] timeout"
            f" {config.milter.timeout} s + content_timeout {config.milter.content_timeout:g} s"
            f" = {longest:g} s): longer ones"
            " are admitted to the rate window again at end of message, and tempfailed if it filled;"
            f" raise it to at least {longest:g}",
        )
    ]


# What postfix() reads of main.cf for itself, beside the listeners' parameters.
_MAIN_PARAMETERS = ("message_size_limit", "milter_default_action", "config_directory")
# Listener ("2525/inet") -> parameter -> its effective value there.
Listeners = dict[str, dict[str, str]]


def postfix(config: Config, directory: str | None) -> list[Finding]:
    postconf = shutil.which("postconf")
    if postconf is None:
        return [Finding("warning", "postfix", "postconf not found: Postfix not checked")]
    if directory is None and not SYSTEM_POSTFIX.exists():
        return [
            Finding(
                "warning",
                "postfix",
                f"no {SYSTEM_POSTFIX}: Postfix not checked (give --postfix-config DIR)",
            )
        ]
    base = [postconf, *(["-c", directory] if directory else [])]
    # Every main.cf parameter the checks below read, in one postconf run: each
    # run is a process, and one that finds main.cf just edited waits for it
    # to settle.
    result = subprocess.run(
        [*base, "-x", *_MAIN_PARAMETERS, *_SMTPD_PARAMETERS],
        capture_output=True,
        text=True,
        check=False,
    )
    main = dict(_assignment(line) for line in result.stdout.splitlines())
    if result.returncode != 0 or not main.get("message_size_limit", "").isdigit():
        return [Finding("error", "postfix", f"postconf failed: {result.stderr.strip()[:200]}")]
    size_limit, default_action = int(main["message_size_limit"]), main["milter_default_action"]
    findings = []
    needed = largest_message(config)
    if size_limit and size_limit <= needed:
        findings.append(
            Finding(
                "error",
                "postfix message_size_limit",
                f"{size_limit} is not above osfmilter's {needed}: customers would get Postfix's "
                "refusal, not the plan's; raise it (e.g. to 62914560)",
            )
        )
    if default_action != "tempfail":
        findings.append(
            Finding(
                "error",
                "postfix milter_default_action",
                f"{default_action!r}: with the milter down, mail would be "
                + ("relayed unchecked" if default_action == "accept" else "refused for good")
                + "; set it to tempfail",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "ok", "postfix", f"message_size_limit {size_limit}, milter_default_action tempfail"
            )
        )
    listeners = smtpd_listeners(base, main)
    if config.mode is Mode.INBOUND:
        findings += inbound_listeners(config, listeners)
    findings += sasl_listeners(listeners)
    return findings


# The wiring guard. An inbound instance accepts every message (it only
# counts), so on a listener where Postfix leaves the relay decision to the
# milter (contrib/postfix/main.cf: check_client_access static:OK) it makes an
# open relay, and on any listener customers relay through it counts their
# outbound mail as inbound volume, which raises their allowance. It belongs
# only on the inbound relay's listener, where Postfix itself refuses mail for
# other domains. Restrictions that end every client's relaying:
_RELAY_CLOSED = {
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject",
    "defer",
    "check_relay_domains",
}
# Permits that cannot make an arbitrary client a relay user: the operator's
# own hosts, or mail to the relay's own destinations.
_RELAY_HARMLESS = {
    "permit_mynetworks",
    "permit_inet_interfaces",
    "permit_auth_destination",
    "permit_mx_backup",
}
_LISTENER_PARAMETERS = (
    "smtpd_milters",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_sasl_auth_enable",
)


def inbound_listeners(config: Config, listeners: Listeners | str) -> list[Finding]:
    """Each smtpd listener that points at this inbound instance must refuse relaying itself."""
    if isinstance(listeners, str):
        return [Finding("warning", "postfix listeners", f"not checked: {listeners}")]
    instance = parse_socket(config.milter.socket)
    findings = []
    for name, settings in listeners.items():
        specs = milter_specs(settings["smtpd_milters"])
        if not any(_same_socket(instance, spec) for spec in specs):
            continue
        sasl = _yes(settings["smtpd_sasl_auth_enable"])
        opening = [
            relay_opening(settings[key], sasl)
            for key in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
        ]
        if None in opening:
            findings.append(
                Finding(
                    "ok",
                    f"postfix listener {name}",
                    "refuses relaying itself: fit for the inbound instance",
                )
            )
            continue
        findings.append(
            Finding(
                "error",
                f"postfix listener {name}",
                f"lets clients relay ({opening[0]} in smtpd_relay_restrictions) and its "
                "smtpd_milters point at this instance, which is in inbound mode and accepts "
                "everything: an open relay; put the outbound instance on it, and the inbound "
                "one only on a listener that refuses relaying (reject_unauth_destination)",
            )
        )
    return findings


# SASL on a listener: the passwords are osfmilter's, Dovecot checks them
# (contrib/dovecot), and none may cross the network in clear.
_SASL_PARAMETERS = (
    "smtpd_sasl_auth_enable",
    "smtpd_sasl_type",
    "smtpd_sasl_path",
    "smtpd_tls_auth_only",
    "smtpd_tls_security_level",
    # Before smtpd_tls_security_level, these said the same (Postfix still reads them).
    "smtpd_use_tls",
    "smtpd_enforce_tls",
    # Port 465 ("submissions"): TLS from the first byte.
    "smtpd_tls_wrappermode",
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_chain_files",
    "smtpd_client_auth_rate_limit",
    "queue_directory",
)


# The listener's chroot column, beside its parameters in smtpd_listeners().
CHROOT = "(chroot)"
# What each listener's settings hold: both checks' parameters, as master.cf makes them.
_SMTPD_PARAMETERS = tuple(dict.fromkeys((*_LISTENER_PARAMETERS, *_SASL_PARAMETERS)))


def sasl_listeners(listeners: Listeners | str) -> list[Finding]:
    """Every listener that offers AUTH must do it over TLS only, through a Dovecot that answers."""
    if isinstance(listeners, str):
        return []  # said once already, or no master.cf to judge
    findings = []
    for name, settings in listeners.items():
        if not _yes(settings["smtpd_sasl_auth_enable"]):
            continue
        problems = sasl_problems(settings)
        subject = f"postfix listener {name}"
        findings += [Finding(severity, subject, text) for severity, text in problems]
        if not any(severity == "error" for severity, _ in problems):
            how = "on TLS only" if _tls_wrapped(settings) else "only after STARTTLS"
            findings.append(
                Finding("ok", subject, f"AUTH {how}, checked by {settings['smtpd_sasl_type']}")
            )
    return findings


def _yes(value: str) -> bool:
    """A Postfix boolean: yes/no in any case."""
    return value.strip().lower() == "yes"


def _tls_level(settings: dict[str, str]) -> str:
    """smtpd_tls_security_level, or what the older smtpd_use_tls/smtpd_enforce_tls make it."""
    level = settings["smtpd_tls_security_level"].strip().lower()
    if level:
        return level
    if _yes(settings["smtpd_enforce_tls"]):
        return "encrypt"
    return "may" if _yes(settings["smtpd_use_tls"]) else "none"


def _tls_wrapped(settings: dict[str, str]) -> bool:
    return _yes(settings["smtpd_tls_wrappermode"])


def sasl_problems(settings: dict[str, str]) -> list[tuple[str, str]]:
    """What is wrong with one SASL listener's settings, as (severity, text)."""
    problems = []
    level = _tls_level(settings)
    # TLS on connect (465) or TLS required before anything: AUTH is never in clear.
    always_tls = _tls_wrapped(settings) or level == "encrypt"
    if not always_tls and not _yes(settings["smtpd_tls_auth_only"]):
        problems.append(
            (
                "error",
                "offers AUTH without TLS: passwords would cross the network in clear; "
                "set smtpd_tls_auth_only = yes",
            )
        )
    if not always_tls and level != "may":
        problems.append(
            (
                "error",
                f"has SASL but smtpd_tls_security_level is {level!r}: no client can start "
                "TLS, so none can log in safely; set it to may, with a certificate",
            )
        )
    else:
        problems += certificate_problems(settings)
    if settings["smtpd_sasl_type"] != "dovecot":
        problems.append(
            (
                "warning",
                f"smtpd_sasl_type is {settings['smtpd_sasl_type']!r}: osfmilter's passwords "
                "are checked by Dovecot (contrib/dovecot); set it to dovecot",
            )
        )
    elif (socket_path := dovecot_socket(settings)) is not None:
        problems += dovecot_socket_problems(socket_path)
    if settings["smtpd_client_auth_rate_limit"].strip() in ("", "0"):
        problems.append(
            (
                "warning",
                "smtpd_client_auth_rate_limit is 0: nothing slows down password guessing; "
                "set a limit per client and minute (contrib/postfix/main.cf)",
            )
        )
    return problems


def certificate_problems(settings: dict[str, str]) -> list[tuple[str, str]]:
    """The listener's certificate files: given, and there (smtpd_tls_chain_files wins)."""
    chain = [name for name in re.split(r"[\s,]+", settings["smtpd_tls_chain_files"]) if name]
    if chain:
        files = [("smtpd_tls_chain_files", name) for name in chain]
    elif settings["smtpd_tls_cert_file"]:
        files = [
            (key, settings[key])
            for key in ("smtpd_tls_cert_file", "smtpd_tls_key_file")
            if settings[key]
        ]
    else:
        return [("error", "offers TLS without a certificate (smtpd_tls_cert_file)")]
    problems = []
    for key, name in files:
        try:
            if not Path(name).is_file():
                problems.append(("error", f"{key} {name} does not exist: TLS would fail"))
        except OSError as exc:  # e.g. /etc/ssl/private is root's and ssl-cert's only
            problems.append(("warning", f"{key} {name} not checked: {exc.strerror}"))
    return problems


def dovecot_socket(settings: dict[str, str]) -> Path | None:
    """Where smtpd finds Dovecot's unix socket (inside the queue directory), else None."""
    path = settings["smtpd_sasl_path"]
    if path.startswith("inet:"):
        return None
    path = path.removeprefix("unix:")
    # Relative to the queue directory, where smtpd runs; a chrooted smtpd
    # finds an absolute path under it too.
    if _yes(settings[CHROOT]):
        path = path.lstrip("/")
    return Path(settings["queue_directory"]) / path


def dovecot_socket_problems(path: Path) -> list[tuple[str, str]]:
    try:
        if stat.S_ISSOCK(path.stat().st_mode):
            return []
    except PermissionError as exc:  # /var/spool/postfix/private is postfix's only
        return [("warning", f"Dovecot's auth socket {path} not checked: {exc.strerror}")]
    except OSError:
        pass
    return [
        (
            "warning",
            f"no Dovecot auth socket at {path}: every login fails until Dovecot "
            "runs with contrib/dovecot's configuration",
        )
    ]


def smtpd_listeners(postconf: list[str], main: dict[str, str]) -> Listeners | str:
    """The effective settings of each smtpd in master.cf, or why they are unknown.

    ``main`` is ``postconf -x`` of main.cf: config_directory and the
    listeners' parameters, which master.cf's -o options override.
    """
    master = Path(main["config_directory"]) / "master.cf"
    if not master.is_file():
        # Said before postconf is asked: on a missing file it sleeps a second before it exits.
        return f"no {master}"
    runs = [
        subprocess.run([*postconf, *options], capture_output=True, text=True, check=False)
        for options in (["-M"], ["-P", "-x"])
    ]
    failed = next((r for r in runs if r.returncode != 0), None)
    if failed is not None:
        return f"postconf failed: {failed.stderr.strip()[:200]}"
    services, overrides = (r.stdout.splitlines() for r in runs)
    defaults = {parameter: main[parameter] for parameter in _SMTPD_PARAMETERS}
    listeners = {}
    for line in services:
        fields = line.split()
        # A network listener running smtpd, or the smtpd that postscreen passes to.
        if len(fields) >= 8 and fields[1] in ("inet", "pass") and Path(fields[7]).name == "smtpd":
            # master.cf's chroot column ("-" is n since Postfix 3.0), under a
            # name no parameter has.
            chroot = "yes" if fields[4] == "y" else "no"
            listeners[f"{fields[0]}/{fields[1]}"] = {**defaults, CHROOT: chroot}
    for line in overrides:
        key, value = _assignment(line)
        service, _, parameter = key.rpartition("/")
        if service in listeners and parameter in defaults:
            listeners[service][parameter] = value
    return listeners


def _assignment(line: str) -> tuple[str, str]:
    key, _, value = line.partition("=")
    return key.strip(), value.strip()


def milter_specs(value: str) -> list[str]:
    """The sockets in an smtpd_milters value, "{ inet:host:port, settings }" groups included."""
    return [
        token.strip("{} ").split(",")[0].strip()
        for token in re.findall(r"\{[^}]*\}|[^\s,{}]+", value)
    ]


def _same_socket(instance: SocketSpec, spec: str) -> bool:
    """Does Postfix's milter spec (inet:HOST:PORT, unix:PATH) reach this libmilter socket?"""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return instance.family == "unix" and os.path.normpath(rest) == instance.path
    if kind != "inet" or instance.family == "unix":
        return False
    try:
        host, port = parse_host_port(rest)
    except ValueError:
        return False
    return port == instance.port and _host_matches(instance.host or "", host)


def _host_matches(bound: str, connected: str) -> bool:
    if bound == connected:
        return True
    try:
        ours = ipaddress.ip_address("127.0.0.1" if bound == "localhost" else bound)
        theirs = ipaddress.ip_address("127.0.0.1" if connected == "localhost" else connected)
    except ValueError:
        return False
    # A socket bound to every address (0.0.0.0, ::) is reached at any of them.
    return ours == theirs or ours.is_unspecified


def relay_opening(restrictions: str, sasl: bool) -> str | None:
    """The first restriction that may let a client relay, or None if relaying ends first."""
    for restriction in re.split(r"[\s,]+", restrictions):
        if not restriction or ":" in restriction:  # a table or service given to the one before
            continue
        if restriction in _RELAY_CLOSED:
            return None
        if restriction == "permit_sasl_authenticated":
            # SASL logins are customers, who send outbound mail.
            if sasl:
                return restriction
        elif restriction not in _RELAY_HARMLESS and restriction.startswith(("permit", "check_")):
            # check_*_access and policy services can answer OK, for any client or sender.
            return restriction
    return "nothing that refuses relaying"


def clamd(config: Config, path: Path, explicit: bool) -> list[Finding]:
    try:
        settings = read_clamd_config(path)
    except OSError as exc:
        severity = "error" if explicit else "warning"
        return [Finding(severity, "clamd", f"{path} not read ({exc.strerror}): clamd not checked")]
    findings = clamd_syntax(settings)
    message = largest_message(config)
    required = {
        # The stream is the message as sent, base64 attachments and all.
        "StreamMaxLength": message + STREAM_MARGIN,
        # Decoded parts are at most the message; a larger limit is not needed.
        "MaxFileSize": message,
        "MaxScanSize": message,
    }
    alert_exceeds = settings.get("AlertExceedsMax", "no").lower() in ("yes", "true")
    for key, needed in required.items():
        if key in settings and _SIZE.match(settings[key]) is None:
            continue  # clamd_syntax said so
        value = parse_size(settings[key]) if key in settings else CLAMD_DEFAULTS[key]
        if value >= needed or (key != "StreamMaxLength" and alert_exceeds):
            continue
        consequence = (
            "clamd refuses the stream (451 4.7.1 for the customer)"
            if key == "StreamMaxLength"
            else "parts past it are not scanned, and clamd says OK"
        )
        findings.append(
            Finding(
                "error",
                f"clamd {key}",
                f"{value} is below {needed}: {consequence}; raise it "
                "(see contrib/clamav/clamd-osfmilter.conf)",
            )
        )
    return findings or [Finding("ok", "clamd", f"{path}: limits fit {message}-byte messages")]


def clamd_unused(path: Path) -> list[Finding]:
    """A clamd.conf given while virus scanning is off: its limits matter to no one."""
    try:
        settings = read_clamd_config(path)
    except OSError as exc:
        return [Finding("error", "clamd", f"{path} not read ({exc.strerror})")]
    return [
        Finding(
            "warning",
            "clamd",
            f"{path} not checked against the message limit: "
            "[clamav] address is empty, so clamd is not used",
        ),
        *clamd_syntax(settings),
    ]


def clamd_syntax(settings: dict[str, str]) -> list[Finding]:
    """What clamd would refuse to start with, or check-config could not read."""
    findings = []
    if "Example" in settings:
        findings.append(
            Finding(
                "error",
                "clamd Example",
                'the sample\'s "Example" line is still there, and clamd '
                "refuses to start with it; remove it",
            )
        )
    for key, value in settings.items():
        if _CLAMD_OPTION.match(key) is None:
            findings.append(Finding("error", "clamd", f"{key!r} is not an option name"))
        elif key in CLAMD_DEFAULTS and _SIZE.match(value) is None:
            findings.append(
                Finding(
                    "error", f"clamd {key}", f"{value!r} is not a size (bytes, or with K, M or G)"
                )
            )
    return findings


def read_clamd_config(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            # clamd separates a key from its value by any whitespace, tabs too.
            key, *value = line.split(None, 1)
            settings[key] = value[0].strip() if value else ""
    return settings


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if match is None:
        return 0
    number, unit = int(match.group(1)), match.group(2).upper()
    return number * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]

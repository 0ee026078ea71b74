"""``osfmilter check-config``: catch settings that would lose or leak mail, before start.

The systemd unit runs it as ExecStartPre. It refuses fail-open settings unless
acknowledged, a Postfix that would answer before the milter or let mail past
a dead milter, and a clamd that would refuse or half-scan the messages the
milter lets through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from osfmilter.config import Config, Mode

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
CLAMD_DEFAULTS = {"StreamMaxLength": 25 * 1024**2, "MaxFileSize": 25 * 1024**2,
                  "MaxScanSize": 100 * 1024**2}
_SIZE = re.compile(r"^(\d+)\s*([kKmMgG]?)$")
_CLAMD_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error", "warning" or "ok"
    subject: str
    text: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.text}"


def lint(config: Config, postfix_dir: str | None = None,
         clamd_config: Path | None = None) -> list[Finding]:
    findings = fail_open(config)
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
        problems.append(("[clamav] address", "empty: virus scanning is off, so every message "
                         "is relayed unscanned (give clamd's socket, e.g. /run/clamav/clamd.ctl)"))
    for name, configured, on_error in (
        ("clamav", bool(config.clamav.address), config.clamav.on_error),
        ("spam", config.spam.backend != "none", config.spam.on_error),
    ):
        if configured and on_error == "accept":
            problems.append((f"[{name}] on_error",
                             "\"accept\" lets mail through unscanned while the scanner is down"))
    acknowledged = config.milter.fail_open_acknowledged
    return [Finding("warning" if acknowledged else "error", subject,
                    text + ("" if acknowledged else
                            "; set [milter] fail_open_acknowledged = true if that is meant"))
            for subject, text in problems]


def postfix(config: Config, directory: str | None) -> list[Finding]:
    postconf = shutil.which("postconf")
    if postconf is None:
        return [Finding("warning", "postfix", "postconf not found: Postfix not checked")]
    if directory is None and not SYSTEM_POSTFIX.exists():
        return [Finding("warning", "postfix",
                        f"no {SYSTEM_POSTFIX}: Postfix not checked (give --postfix-config DIR)")]
    command = [postconf, *(["-c", directory] if directory else []), "-h",
               "message_size_limit", "milter_default_action"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        return [Finding("error", "postfix", f"postconf failed: {result.stderr.strip()[:200]}")]
    size_limit, default_action = int(lines[0]), lines[1]
    findings = []
    needed = largest_message(config)
    if size_limit and size_limit <= needed:
        findings.append(Finding(
            "error", "postfix message_size_limit",
            f"{size_limit} is not above osfmilter's {needed}: customers would get Postfix's "
            "refusal, not the plan's; raise it (e.g. to 62914560)"))
    if default_action != "tempfail":
        findings.append(Finding(
            "error", "postfix milter_default_action",
            f"{default_action!r}: with the milter down, mail would be "
            + ("relayed unchecked" if default_action == "accept" else "refused for good")
            + "; set it to tempfail"))
    if not findings:
        findings.append(Finding("ok", "postfix",
                                f"message_size_limit {size_limit}, milter_default_action tempfail"))
    return findings


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
        consequence = ("clamd refuses the stream (451 4.7.1 for the customer)"
                       if key == "StreamMaxLength" else
                       "parts past it are not scanned, and clamd says OK")
        findings.append(Finding("error", f"clamd {key}",
                                f"{value} is below {needed}: {consequence}; raise it "
                                "(see contrib/clamav/clamd-osfmilter.conf)"))
    return findings or [Finding("ok", "clamd", f"{path}: limits fit {message}-byte messages")]


def clamd_unused(path: Path) -> list[Finding]:
    """A clamd.conf given while virus scanning is off: its limits matter to no one."""
    try:
        settings = read_clamd_config(path)
    except OSError as exc:
        return [Finding("error", "clamd", f"{path} not read ({exc.strerror})")]
    return [Finding("warning", "clamd", f"{path} not checked against the message limit: "
                    "[clamav] address is empty, so clamd is not used"),
            *clamd_syntax(settings)]


def clamd_syntax(settings: dict[str, str]) -> list[Finding]:
    """What clamd would refuse to start with, or check-config could not read."""
    findings = []
    if "Example" in settings:
        findings.append(Finding("error", "clamd Example",
                                "the sample's \"Example\" line is still there, and clamd "
                                "refuses to start with it; remove it"))
    for key, value in settings.items():
        if _CLAMD_OPTION.match(key) is None:
            findings.append(Finding("error", "clamd", f"{key!r} is not an option name"))
        elif key in CLAMD_DEFAULTS and _SIZE.match(value) is None:
            findings.append(Finding("error", f"clamd {key}",
                                    f"{value!r} is not a size (bytes, or with K, M or G)"))
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

"""A private, throw-away Sendmail 8.17 for integration tests and benchmarks.

The binary is Debian's ``sendmail-bin``, which ``scripts/install-deps``
unpacks into ``.cache/sendmail`` without installing it (as a package it
would replace Postfix as the system MTA). Its sendmail.cf is built with m4
and Debian's ``sendmail-cf`` from the shipped ``contrib/sendmail/osfmilter.mc``,
with only the milter socket replaced by the test milter's. The daemon runs in
the foreground (``-bD``) with its own configuration, queue, pid and status
files in the work directory, listens on one loopback port and relays every
message to ``[127.0.0.1]:relay_port`` (a :class:`tests.harness.sink.Sink`).

Sendmail has no XCLIENT: a test poses as another client by connecting from
another loopback address (``127.0.0.2``, ...), which the milter then sees.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.ports import free_port
from tests.harness.service import Service

__all__ = ["SENDMAIL_BINARY", "SENDMAIL_CF_M4", "SendmailInstance", "sendmail_cf"]

REPOSITORY = Path(__file__).resolve().parents[2]
OSFMILTER_MC = REPOSITORY / "contrib" / "sendmail" / "osfmilter.mc"
SENDMAIL_CF_M4 = Path("/usr/share/sendmail/cf/m4/cf.m4")
#: Where scripts/install-deps unpacks sendmail-bin; OSFMILTER_SENDMAIL overrides it.
SENDMAIL_BINARY = Path(
    os.environ.get(
        "OSFMILTER_SENDMAIL",
        REPOSITORY / ".cache" / "sendmail" / "usr" / "libexec" / "sendmail" / "sendmail",
    )
)

_MILTER_LINE = re.compile(r"^(Xosfmilter, S=)[^,]*(,.*)$", re.MULTILINE)


def sendmail_cf(site_lines: str, milter: str) -> str:
    """sendmail.cf from ``site_lines`` plus contrib/sendmail/osfmilter.mc, milter at ``milter``.

    ``milter`` is a libmilter socket spec, which Sendmail spells the same way
    (``inet:PORT@HOST``, ``unix:/path``). m4's one warning, about
    promiscuous_relay, is expected and dropped.
    """
    mc = (
        f"include(`{SENDMAIL_CF_M4}')dnl\n"
        "VERSIONID(`osfmilter test harness')dnl\n"
        "OSTYPE(`linux')dnl\n"
        f"{site_lines}"
        f"include(`{OSFMILTER_MC}')dnl\n"
        "MAILER(`local')dnl\n"
        "MAILER(`smtp')dnl\n"
    )
    result = subprocess.run(["m4"], input=mc, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"m4 failed ({result.returncode}): {result.stderr}")
    cf, count = _MILTER_LINE.subn(rf"\g<1>{milter}\g<2>", result.stdout)
    if count != 1:
        raise RuntimeError(f"expected one Xosfmilter line in sendmail.cf, found {count}")
    return cf


class SendmailInstance(Service):
    """``sendmail -bD`` on ``127.0.0.1:port`` with osfmilter at ``milter``.

    ``milter`` is a libmilter socket spec. The daemon and the children it
    forks (one per SMTP session, one per delivery) form a process group of
    their own, which :meth:`stop` ends.
    """

    #: The name Sendmail greets with; the machine's own may be unqualified.
    HOSTNAME = "sendmail.harness.test"

    def __init__(
        self, workdir: Path, *, relay_port: int, milter: str, port: int | None = None
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.relay_port = relay_port
        self.milter = milter
        self.port = port or free_port()
        self.cf_path = self.workdir / "sendmail.cf"
        self.pid_path = self.workdir / "sendmail.pid"
        self.traffic_path = self.workdir / "traffic.log"
        self.output_path = self.workdir / "sendmail.out"
        self.process: subprocess.Popen[bytes] | None = None

    def site_lines(self) -> str:
        """The m4 lines that keep this Sendmail inside its work directory and on loopback."""
        work = self.workdir
        relay = f"TCP $h {self.relay_port}"
        return (
            f"define(`confDOMAIN_NAME', `{self.HOSTNAME}')dnl\n"
            f"define(`QUEUE_DIR', `{work}/mqueue')dnl\n"
            f"define(`confPID_FILE', `{self.pid_path}')dnl\n"
            f"define(`STATUS_FILE', `{work}/statistics')dnl\n"
            f"define(`confCW_FILE', `-o {work}/local-host-names')dnl\n"
            f"define(`confSERVICE_SWITCH_FILE', `{work}/service.switch')dnl\n"
            f"define(`confHOSTS_FILE', `{work}/hosts')dnl\n"
            "define(`ALIAS_FILE', `')dnl\n"
            "define(`confDONT_PROBE_INTERFACES', `true')dnl\n"
            # Every message to the sink, whatever the recipient's domain; no DNS.
            "define(`SMART_HOST', `[127.0.0.1]')dnl\n"
            f"define(`RELAY_MAILER_ARGS', `{relay}')dnl\n"
            f"define(`ESMTP_MAILER_ARGS', `{relay}')dnl\n"
            f"define(`SMTP_MAILER_ARGS', `{relay}')dnl\n"
            "FEATURE(`nocanonify')dnl\n"
            # Test sender domains exist in no DNS.
            "FEATURE(`accept_unresolvable_domains')dnl\n"
            f"DAEMON_OPTIONS(`Family=inet, Name=MTA, Addr=127.0.0.1, Port={self.port}')dnl\n"
        )

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "mqueue").mkdir(mode=0o700, exist_ok=True)
        (self.workdir / "service.switch").write_text("hosts files\naliases files\n")
        (self.workdir / "hosts").write_text(f"127.0.0.1 localhost {self.HOSTNAME}\n")
        self.cf_path.write_text(sendmail_cf(self.site_lines(), self.milter))

    def command(self) -> list[str]:
        """The command line that runs the daemon (in a UTS namespace of its own).

        Sendmail qualifies the machine's host name before it reads
        sendmail.cf; for a name without a dot it sleeps 60 s and retries.
        A private host name set in a private UTS namespace avoids that and
        leaves the machine's own alone (``--map-root-user`` lets an
        unprivileged user do the same).
        """
        unshare = (
            ["unshare", "--uts"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--uts"]
        )
        return [
            *unshare,
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.HOSTNAME,
            str(SENDMAIL_BINARY),
            "-C",
            str(self.cf_path),
            "-bD",
            "-X",
            str(self.traffic_path),
        ]

    def start(self, timeout: float = 30.0) -> None:
        if not SENDMAIL_BINARY.exists():
            raise FileNotFoundError(f"{SENDMAIL_BINARY}: run scripts/install-deps")
        self._write_config()
        with self.output_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until_ready(self.process, self._accepts, "sendmail", timeout, self.log)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"220")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to the daemon's process group (sessions and deliveries included)."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None

    def log(self) -> str:
        """What Sendmail printed and the SMTP traffic it logged (no syslog here)."""
        texts = [
            p.read_text(errors="replace")
            for p in (self.output_path, self.traffic_path)
            if p.exists()
        ]
        return "\n".join(texts)[-5000:]

"""A private, throw-away Postfix instance for integration tests.

Each instance lives entirely inside its own work directory (configuration,
queue, data, log) and is driven with ``postfix -c DIR``, so several can run
side by side and none of them touches ``/etc/postfix`` or a system Postfix.
Every delivery goes to ``[127.0.0.1]:relay_port`` (normally a
:class:`tests.harness.sink.Sink`) and nothing is ever resolved through DNS:
the only network traffic is on loopback.

The instance runs as root (the harness is started by root) with the usual
``postfix``/``postdrop`` accounts, but without chroot, so a milter socket
path is used as is.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.harness.ports import free_dual_stack_port, free_port, ipv6_loopback_available
from tests.harness.service import Service

__all__ = ["PostfixInstance", "postfix_knows_parameter", "postfix_milter_spec"]

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"

#: Postfix 3.7 daemons as in Debian's master.cf, but with chroot off (the
#: private queue directory has no copy of /etc) and no ``smtp inet`` line:
#: the listeners are generated per instance.
_INTERNAL_SERVICES = """\
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
# Required for maillog_file: without postlogd the daemons' log records
# (there is no syslog daemon on the test machines) are lost.
postlog    unix-dgram n  -       n       -       1       postlogd
"""

_QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold")


def postfix_knows_parameter(name: str) -> bool:
    """Tell whether the installed Postfix has main.cf parameter ``name``.

    Used for settings that were back-ported in a patch release (for
    example ``smtpd_forbid_bare_newline``, Postfix 3.7.10).
    """
    result = subprocess.run(
        [POSTCONF, "-d", "-h", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "unknown parameter" not in result.stderr


def postfix_milter_spec(spec: str) -> str:
    """Translate a libmilter socket spec into Postfix's ``smtpd_milters`` syntax.

    libmilter (and so the milter's own configuration) writes
    ``inet:PORT@HOST``, ``inet6:PORT@HOST`` and ``unix:PATH``/``local:PATH``;
    Postfix wants ``inet:HOST:PORT`` and ``unix:PATH`` and dies with
    "garbage after numerical service" on the libmilter form. Specs already
    in Postfix form are returned unchanged.
    """
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if not sep:
        raise ValueError(f"not a milter socket spec: {spec!r}")
    if kind in ("unix", "local"):
        return f"unix:{rest}"
    if kind in ("inet", "inet6") and "@" in rest:
        port, _, host = rest.partition("@")
        host = host.strip("[]")
        if ":" in host:
            host = f"[{host}]"
        return f"inet:{host}:{port}"
    return spec


def _cf_value(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"main.cf values must be single-line: {value!r}")
    return value


def _proc_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _proc_env_has(pid: int, needle: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return needle in environ.split(b"\0")


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie is as good as gone: it holds no sockets and no queue files.
    return stat.rpartition(")")[2].split()[0] != "Z"


class PostfixInstance(Service):
    """A private Postfix 3.7 relaying everything to a loopback sink.

    ``milter`` is a libmilter socket spec (``inet:PORT@127.0.0.1`` or
    ``unix:/path``; translated for Postfix) or None for no milter. ``extra_main_cf`` overrides or
    adds main.cf parameters after the harness defaults. Use as a context
    manager, or call :meth:`start` and :meth:`stop` yourself.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        relay_port: int,
        smtpd_port: int | None = None,
        milter: str | None = None,
        extra_main_cf: Mapping[str, str] | None = None,
        name: str = "postfix-test",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.relay_port = relay_port
        self.milter = milter
        self.name = name
        self.extra_main_cf: dict[str, str] = dict(extra_main_cf or {})
        self.ipv6 = ipv6_loopback_available()
        if smtpd_port is None:
            smtpd_port = free_dual_stack_port() if self.ipv6 else free_port()
        self.smtpd_port = smtpd_port
        #: The ``[::1]`` listener uses the same port number (None without IPv6).
        self.smtpd_port_v6: int | None = smtpd_port if self.ipv6 else None
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "spool"
        self.data_dir = self.workdir / "data"
        self.maillog_path = self.workdir / "maillog"
        self._master_pid: int | None = None

    # ------------------------------------------------------------------ config

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters this instance is written with."""
        hostname = re.sub(r"[^a-z0-9-]+", "-", self.name.lower()).strip("-") or "postfix"
        cf: dict[str, str] = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": self.name,
            # No syslog daemon here: postlogd writes this file.
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(self.workdir),
            # Fixed names: the defaults come from gethostname()/DNS.
            "myhostname": f"{hostname}.harness.test",
            "mydomain": "harness.test",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "all" if self.ipv6 else "ipv4",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "mydestination": "",
            "relay_domains": "",
            "local_transport": "error:local delivery disabled",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            # Nothing may be resolved: no DNS for the SMTP client, no
            # reverse lookup of (XCLIENT-supplied) client addresses.
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "biff": "no",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8, [::1]/128",
            # The milter is the relay gate in this product; fail closed.
            # smtpd refuses to start ("specify at least one working instance
            # of: reject_unauth_destination, ...") when both lists are just
            # "permit"; static:OK permits everyone and satisfies the check,
            # the trailing "reject" is never reached.
            "smtpd_relay_restrictions": "check_client_access static:OK, reject",
            "smtpd_recipient_restrictions": "permit",
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "30s",
            "milter_mail_macros": (
                "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}"
            ),
            "milter_rcpt_macros": "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
            "milter_end_of_data_macros": "i",
            # 60 MiB: above the milter's own 50 MB limit so that the milter's
            # answer is what clients see.
            "message_size_limit": "62914560",
            "mailbox_size_limit": "0",
            "virtual_mailbox_limit": "0",
            # Retried deliveries to the sink happen within seconds.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            # Don't throttle smtpd while the queue manager catches up.
            "in_flow_delay": "0s",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
        }
        if self.milter is not None:
            cf["smtpd_milters"] = postfix_milter_spec(self.milter)
        if postfix_knows_parameter("smtpd_forbid_bare_newline"):
            cf["smtpd_forbid_bare_newline"] = "normalize"
            # The default exclusion is $mynetworks, i.e. every test client
            # that does not use XCLIENT ADDR would be exempt.
            cf["smtpd_forbid_bare_newline_exclusions"] = ""
        cf.update(self.extra_main_cf)
        return cf

    def master_cf(self) -> str:
        """The master.cf text: loopback smtpd listeners plus internal services."""
        lines = [f"127.0.0.1:{self.smtpd_port} inet n - n - - smtpd"]
        if self.smtpd_port_v6 is not None:
            lines.append(f"[::1]:{self.smtpd_port_v6} inet n - n - - smtpd")
        return "\n".join(lines) + "\n" + _INTERNAL_SERVICES

    def write_config(self) -> None:
        """Write main.cf and master.cf (start() does it too), e.g. for check-config."""
        # The daemons run as "postfix" and must traverse to the queue.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.config_dir.mkdir(mode=0o755, exist_ok=True)
        # postfix(1) chdir()s here before post-install creates the rest.
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)
        main = "".join(f"{key} = {_cf_value(value)}\n" for key, value in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        for path in (self.config_dir / "main.cf", self.config_dir / "master.cf"):
            path.chmod(0o644)
        self._settle()

    def _settle(self) -> None:
        """Date main.cf and master.cf back, as files written whole and long ago.

        Every Postfix program reads a config file changed in the last two
        seconds again every 0.3 s until it is older (load_file), so each
        start or reload right after writing would wait about two seconds.
        """
        an_hour_ago = time.time() - 3600
        for path in (self.config_dir / "main.cf", self.config_dir / "master.cf"):
            os.utime(path, (an_hour_ago, an_hour_ago))

    def _check_traversable(self) -> None:
        for parent in self.workdir.parents:
            if parent.stat().st_mode & 0o001 == 0:
                raise RuntimeError(
                    f"{parent} is not world-searchable; the postfix user cannot reach "
                    f"{self.queue_dir}. Use e.g. tempfile.mkdtemp(dir='/tmp')."
                )

    # ----------------------------------------------------------------- control

    def _run(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        """Run a Postfix command; return its stdout, raise with context on failure."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited with {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"maillog tail:\n{self.maillog_tail()}"
            )
        return result.stdout

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start the master and wait for the banner."""
        self.write_config()
        self._check_traversable()
        # "postfix start" runs "post-install create-missing" (queue and data
        # directories) and the integrity checks, then "master -w", which
        # returns only once the master has initialised.
        try:
            self._run(POSTFIX, "-c", str(self.config_dir), "start")
        except RuntimeError:
            self._kill_leftovers()
            raise
        self._master_pid = self._read_master_pid()
        atexit.register(self.stop)
        try:
            self._wait_banner("127.0.0.1", self.smtpd_port, timeout)
            if self.smtpd_port_v6 is not None:
                self._wait_banner("::1", self.smtpd_port_v6, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_banner(self, host: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=5.0) as sock:
                    banner = sock.makefile("rb").readline()
                    if banner.startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
                    last_error = f"unexpected banner {banner!r}"
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"Postfix {self.name} gave no 220 banner on [{host}]:{port} within "
            f"{timeout}s ({last_error})\nmaillog tail:\n{self.maillog_tail()}"
        )

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        """Tell whether this instance's master process is alive."""
        pid = self._master_pid or self._read_master_pid()
        return pid is not None and _pid_alive(pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the instance and make sure none of its processes survive."""
        atexit.unregister(self.stop)
        pid = self._master_pid or self._read_master_pid()
        if pid is not None and _pid_alive(pid):
            # "postfix stop" sends SIGTERM, waits up to 5 s, then kill -9s
            # the master's process group.
            self._run(POSTFIX, "-c", str(self.config_dir), "stop", check=False)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._kill_leftovers(pid)
        self._master_pid = None

    def _own_pids(self, master_pid: int | None) -> list[int]:
        """Processes of this instance: they inherit ``MAIL_CONFIG=<config_dir>``."""
        needle = f"MAIL_CONFIG={self.config_dir}".encode()
        own = []
        for pid in _proc_pids():
            if pid == os.getpid() or not _pid_alive(pid):
                continue
            if pid == master_pid or _proc_env_has(pid, needle):
                own.append(pid)
        return own

    def _kill_leftovers(self, master_pid: int | None = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pids = self._own_pids(master_pid)
            if not pids:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"Postfix {self.name}: processes {pids} will not die")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def reload(self) -> None:
        """Make the running daemons re-read main.cf and master.cf."""
        self._run(POSTFIX, "-c", str(self.config_dir), "reload")

    def postconf(self, **values: str) -> None:
        """Set main.cf parameters (use :meth:`reload` to apply them)."""
        if not values:
            return
        self.extra_main_cf.update(values)
        args = [f"{key}={_cf_value(value)}" for key, value in values.items()]
        self._run(POSTCONF, "-c", str(self.config_dir), "-e", *args)
        self._settle()

    def get_postconf(self, name: str) -> str:
        """The effective value of a main.cf parameter."""
        return self._run(POSTCONF, "-c", str(self.config_dir), "-h", name).strip()

    # ------------------------------------------------------------------- queue

    def flush(self) -> None:
        """Ask the queue manager to retry all deferred mail now."""
        self._run(POSTQUEUE, "-c", str(self.config_dir), "-f")

    def queue(self) -> list[dict[str, Any]]:
        """The queue as ``postqueue -j`` reports it (one dict per message)."""
        out = self._run(POSTQUEUE, "-c", str(self.config_dir), "-j")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def queue_is_empty(self) -> bool:
        """Tell whether no message waits in any queue (including maildrop)."""
        for sub in _QUEUE_SUBDIRS:
            directory = self.queue_dir / sub
            if directory.is_dir() and any(p.is_file() for p in directory.rglob("*")):
                return False
        return True

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        """Wait until every queued message has been delivered or bounced."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue_is_empty():
                return
            time.sleep(0.1)
        raise AssertionError(
            f"Postfix {self.name}: queue not empty after {timeout}s: {self.queue()}\n"
            f"maillog tail:\n{self.maillog_tail()}"
        )

    # --------------------------------------------------------------------- log

    def maillog(self) -> str:
        """The whole log of this instance."""
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines: int = 40) -> str:
        """The last ``lines`` log lines, for error messages."""
        return "\n".join(self.maillog().splitlines()[-lines:])

    # ---------------------------------------------------------------- protocol

    def remove(self) -> None:
        """Stop the instance and delete its work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

"""A private Dovecot auth service built from the shipped contrib/dovecot files.

The configuration operators copy to /etc/dovecot is rendered with only its
paths and users changed: the work directory's base_dir, state_dir and log,
the auth socket (for a private, non-chrooted Postfix: ``postfix_sasl_path``
is its absolute path), the SQL passdb file and its ``connect`` line
(from the test's SQLAlchemy URL, through :func:`osfmilter.dovecot.sql_connect`),
and root for the auth worker (the test databases are root's files). Every
setting that decides how a login is checked is the shipped one.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from osfmilter.dovecot import sql_connect
from tests.harness.daemon import wait_until_ready
from tests.harness.service import Service

__all__ = ["CONTRIB_DOVECOT", "DovecotAuth"]

CONTRIB_DOVECOT = Path(__file__).parents[2] / "contrib" / "dovecot"
DOVECOT = "/usr/sbin/dovecot"

_SHIPPED_SOCKET = "unix_listener /var/spool/postfix/private/auth {"
_SHIPPED_SQL_FILE = "args = /etc/dovecot/osfmilter-sql.conf.ext\n"
_SHIPPED_WORKER_USER = "service auth-worker {\n"


def _replace_once(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"{where}: expected {old!r} exactly once; did contrib change?")
    return text.replace(old, new)


class DovecotAuth(Service):
    """Dovecot's auth service on ``database_url``, answering on :attr:`socket_path`."""

    def __init__(self, workdir: Path, database_url: str) -> None:
        self.workdir = Path(workdir).resolve()
        self.database_url = database_url
        self.base_dir = self.workdir / "run"
        self.state_dir = self.workdir / "state"
        self.socket_path = self.workdir / "auth"
        self.config_path = self.workdir / "dovecot.conf"
        self.sql_path = self.workdir / "osfmilter-sql.conf.ext"
        self.log_path = self.workdir / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def postfix_sasl_path(self) -> str:
        """What Postfix's ``smtpd_sasl_path`` is for this service (smtpd not chrooted)."""
        return str(self.socket_path)

    # ------------------------------------------------------------------ config

    def render_sql(self) -> str:
        """The shipped passdb file for the URL's database, pointed at it."""
        dovecot_sql = sql_connect(self.database_url)
        name = f"osfmilter-sql-{dovecot_sql.driver}.conf.ext"
        text = (CONTRIB_DOVECOT / name).read_text()
        lines = re.findall(r"(?m)^connect = .*$", text)
        if len(lines) != 1:
            raise AssertionError(f"{name}: expected one connect line, found {lines}")
        return text.replace(lines[0], f"connect = {dovecot_sql.connect}")

    def render_config(self) -> str:
        """The shipped dovecot.conf with this instance's paths and users."""
        text = (CONTRIB_DOVECOT / "dovecot.conf").read_text()
        where = "contrib/dovecot/dovecot.conf"
        text = _replace_once(text, _SHIPPED_SOCKET, f"unix_listener {self.socket_path} {{", where)
        text = _replace_once(text, _SHIPPED_SQL_FILE, f"args = {self.sql_path}\n", where)
        worker = text.index(_SHIPPED_WORKER_USER)
        head, tail = text[:worker], text[worker:]
        text = head + _replace_once(tail, "user = osfmilter\n", "user = root\n", where)
        paths = (
            f"base_dir = {self.base_dir}\n"
            f"state_dir = {self.state_dir}\n"
            f"log_path = {self.log_path}\n"
            f"instance_name = osf-{self.workdir.name}\n"
        )
        return paths + text

    def write_config(self) -> None:
        # Postfix's smtpd (user postfix) must reach the socket in here.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.state_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.render_config())
        self.sql_path.write_text(self.render_sql())
        self.sql_path.chmod(0o600)

    # ----------------------------------------------------------------- control

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        with (self.workdir / "dovecot.out").open("ab") as out:
            # A session of its own: stop() can signal every Dovecot process.
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_ready(self.process, self.ping, "dovecot", timeout, self.log, interval=0.05)
        except BaseException:
            self.stop()
            raise

    def ping(self) -> bool:
        """Does the auth socket answer with Dovecot's auth protocol handshake?"""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket_path))
                sock.sendall(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
                received = b""
                while b"\nDONE\n" not in received:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    received += chunk
                return received.startswith(b"VERSION\t1\t")
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        group = self.process.pid
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # The master is gone; its children (auth, auth-worker, log...) follow
        # it, and whichever has not yet gets SIGKILL.
        deadline = time.monotonic() + timeout
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process = None

    def log(self, tail: int | None = 4000) -> str:
        """Dovecot's log (and its stdout): the last ``tail`` characters, or all of it."""
        texts = [
            p.read_text(errors="replace")
            for p in (self.log_path, self.workdir / "dovecot.out")
            if p.exists()
        ]
        text = "\n".join(texts)
        return text if tail is None else text[-tail:]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True

"""A real SpamAssassin spamd for tests: loopback only, network tests off.

Debian's package ships the rules (GTUBE included), so no sa-update is needed.
``--siteconfigpath`` replaces /etc/spamassassin, so the plugin ``*.pre`` files
are copied next to our own local.cf.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.ports import free_port
from tests.harness.service import Service

LOCAL_CF = """\
required_score 5.0
use_bayes 0
bayes_auto_learn 0
use_razor2 0
use_pyzor 0
skip_rbl_checks 1
dns_available no
report_safe 0
lock_method flock
"""

# The GTUBE test string, which every SpamAssassin scores 1000.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class SpamdProcess(Service):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        # spamd's children run as nobody and read the site config from here.
        self.workdir.mkdir(parents=True, exist_ok=True)
        for directory in (self.workdir, *self.workdir.parents):
            if directory.stat().st_mode & 0o005 != 0o005:
                directory.chmod(directory.stat().st_mode | 0o005)
        site = self.workdir / "site"
        home = self.workdir / "home"
        site.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, "nobody")
        for pre in Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, site / pre.name)
        (site / "local.cf").write_text(LOCAL_CF)
        with (self.workdir / "spamd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "spamd",
                    "-L",
                    "-x",
                    "-u",
                    "nobody",
                    "-H",
                    str(home),
                    f"--siteconfigpath={site}",
                    f"--listen=127.0.0.1:{self.port}",
                    "-A",
                    "127.0.0.1",
                    "--max-children=2",
                    "--min-children=1",
                    f"--pidfile={self.workdir / 'spamd.pid'}",
                    "-s",
                    "stderr",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_ready(self.process, self.ping, "spamd", timeout, self.log, interval=0.2)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b"PONG" in sock.recv(64)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the parent takes its children with it
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def log(self) -> str:
        path = self.workdir / "spamd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

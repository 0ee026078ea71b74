"""A real rspamd for tests, offline: its network-dependent modules off, loopback only.

The stock /etc/rspamd/rspamd.conf is used with our own LOCAL_CONFDIR, RUNDIR,
DBDIR and LOGDIR (``--var``), so nothing under /etc changes. A cold start
compiles hyperscan databases (15-45 s on two cores); DBDIR keeps them, so a
second start in the same directory takes about a second.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.ports import free_port
from tests.harness.service import Service

DISABLED_MODULES = (
    "rbl",
    "fuzzy_check",
    "phishing",
    "spf",
    "dkim",
    "dmarc",
    "arc",
    "asn",
    "rspamd_update",
    "mx_check",
    "whitelist",
    "hfilter",
    "dkim_signing",
    "neural",
    "ratelimit",
    "replies",
    "greylist",
    "history_redis",
    "url_redirector",
    "emails",
    "surbl",
    "multimap",
)


class RspamdProcess(Service):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.normal_port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.normal_port}"

    def _configure(self) -> list[str]:
        etc, run = self.workdir / "etc", self.workdir / "run"
        (etc / "override.d").mkdir(parents=True, exist_ok=True)
        (etc / "local.d").mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "_rspamd", "_rspamd")
        override = etc / "override.d"
        (override / "worker-normal.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.normal_port}";\ncount = 1;\n'
        )
        (override / "worker-controller.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.controller_port}";\ncount = 1;\n'
        )
        (override / "worker-proxy.inc").write_text("enabled = false;\n")
        (override / "worker-fuzzy.inc").write_text("enabled = false;\n")
        for module in DISABLED_MODULES:
            (override / f"{module}.conf").write_text("enabled = false;\n")
        # No resolver is reachable: point DNS at a closed loopback port, fail fast.
        dead_resolver = f"127.0.0.1:{free_port()}"
        (etc / "local.d" / "options.inc").write_text(
            f'dns {{ nameserver = ["{dead_resolver}"]; timeout = 0.1s; retransmits = 1; }}\n'
            "local_addrs = [];\n"
        )
        variables = {"LOCAL_CONFDIR": etc, "RUNDIR": run, "DBDIR": run, "LOGDIR": run}
        return [f"--var={name}={path}" for name, path in variables.items()]

    def start(self, timeout: float = 120.0) -> None:
        variables = self._configure()
        with (self.workdir / "rspamd.out").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "rspamd",
                    "-f",
                    "-u",
                    "_rspamd",
                    "-g",
                    "_rspamd",
                    "-c",
                    "/etc/rspamd/rspamd.conf",
                    *variables,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_ready(self.process, self.ping, "rspamd", timeout, self.log, interval=0.25)

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:  # noqa: S310
                return bool(response.read().strip() == b"pong")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def log(self) -> str:
        texts = [
            p.read_text(errors="replace")
            for p in (self.workdir / "rspamd.out", self.workdir / "run" / "rspamd.log")
            if p.exists()
        ]
        return "\n".join(texts)[-3000:]

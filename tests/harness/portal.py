"""``osfmilter web`` as a child process: the API and the portal as a browser reaches them.

The project's own ``osfmilter`` command (the virtualenv's, beside this
Python) on a configuration in the test's directory: embedded SQLite and
``[web] listen`` on a free loopback port. The same command line seeds it,
as an operator would: a customer, and a portal user with a known password.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.ports import free_port
from tests.harness.service import Service

#: The console script of the virtualenv running the tests.
OSFMILTER = Path(sys.executable).with_name("osfmilter")


class WebProcess(Service):
    """``osfmilter web`` on 127.0.0.1 and a free port; ``extra_web`` goes into ``[web]``."""

    def __init__(self, workdir: Path, extra_web: str = "", extra_config: str = "") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = workdir / "osfmilter.toml"
        self.log_path = workdir / "web.log"
        # [registration]'s defaults: a customer may register global networks
        # up to /16 (IPv4) and /48 (IPv6); never documentation or private ones.
        self.config_path.write_text(
            f'state_dir = "{workdir}"\nnode_name = "test-web"\n'
            f'[database]\nurl = "sqlite:///{workdir}/osfmilter.sqlite3"\n'
            f'[web]\nlisten = "127.0.0.1:{self.port}"\n{extra_web}'
            f"{extra_config}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run an osfmilter command on this configuration; asserts it succeeded."""
        result = subprocess.run(
            [str(OSFMILTER), "--config", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"osfmilter {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def seed(self, customer: str, email: str, password: str) -> None:
        """A customer on the free plan and its portal user, logging in with ``password``."""
        self.cli("customer", "add", customer)
        self.cli("user", "add", email, "--customer", customer, "--password-stdin", stdin=password)

    def token(self, customer: str) -> str:
        """A new API token of ``customer``'s, as ``osfmilter token create`` prints it once."""
        out = self.cli("token", "create", "--customer", customer).stdout
        [token] = re.findall(r"^token: (osf_\S+)$", out, re.MULTILINE)
        return str(token)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the API answers (its OpenAPI document needs no token).

        It makes the embedded SQLite database's schema itself, as the milter does.
        """
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(OSFMILTER), "--config", str(self.config_path), "web"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until_ready(self.process, self._answers, "osfmilter web", timeout, self.log)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/api/v1/openapi.json")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down at once with no request in flight), then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

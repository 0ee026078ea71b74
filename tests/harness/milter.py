"""``osfmilter run`` as a child process, the way an MTA sees it.

libmilter's state is process-global, so the milter under test always runs
in a process of its own, from the project's own command line.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.ports import free_port
from tests.harness.service import Service


def _accepts(family: socket.AddressFamily, address: str | tuple[str, int]) -> bool:
    try:
        with socket.socket(family) as sock:
            sock.settimeout(1)
            sock.connect(address)
        return True
    except OSError:
        return False


class MilterProcess(Service):
    def __init__(
        self, workdir: Path, database_url: str, port: int | None = None, extra_config: str = ""
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config_path = workdir / "osfmilter.toml"
        self.log_path = workdir / "osfmilter.log"
        self.config_path.write_text(
            f'state_dir = "{workdir}"\nnode_name = "test-node"\n'
            f'[milter]\nsocket = "inet:{self.port}@127.0.0.1"\n'
            f'[database]\nurl = "{database_url}"\ntimeout = 3\n'
            f"{extra_config}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_spec(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    def start(self, timeout: float = 30.0) -> None:
        """Start on the configured inet socket and wait until it accepts connections."""
        self._start(lambda: _accepts(socket.AF_INET, ("127.0.0.1", self.port)), timeout)

    def start_unix(self, path: Path, timeout: float = 30.0) -> None:
        """Start with a unix socket (configured by the caller) and wait for it to accept."""
        self._start(lambda: _accepts(socket.AF_UNIX, str(path)), timeout)

    def _start(self, ready: Callable[[], bool], timeout: float) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "osfmilter", "--config", str(self.config_path), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until_ready(self.process, ready, "milter", timeout, self.log)

    def stop(self) -> None:
        """SIGKILL: libmilter takes ~5 s to notice SIGTERM, and tests need not wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def decision_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if "osfmilter.decision" in line]

    def decisions(self, count: int = 1, timeout: float = 5.0, **where: str) -> list[dict[str, str]]:
        """The fields of the decision lines whose fields match ``where`` (e.g. ``qid=``).

        Waits up to ``timeout`` for ``count`` of them (the milter may log a
        moment after the MTA answered), then asserts there are exactly ``count``.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for line in self.decision_lines():
                _, _, text = line.partition("osfmilter.decision: ")
                fields = dict(part.partition("=")[::2] for part in shlex.split(text))
                if all(fields.get(key) == value for key, value in where.items()):
                    found.append(fields)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) == count, f"{where}: {found}\n--- milter log ---\n{self.log()}"
                return found
            time.sleep(0.1)

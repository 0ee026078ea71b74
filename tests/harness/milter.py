"""``osfmilter run`` as a child process, the way an MTA sees it.

libmilter's state is process-global, so the milter under test always runs
in a process of its own, from the project's own command line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness.ports import free_port


class MilterProcess:
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
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "osfmilter", "--config", str(self.config_path), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milter exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"milter did not listen on {self.port}:\n{self.log()}")

    def start_unix(self, path: Path, timeout: float = 30.0) -> None:
        """Start with a unix socket (configured by the caller) and wait for it to accept."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "osfmilter", "--config", str(self.config_path), "run"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milter exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(path))
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"milter did not listen on {path}:\n{self.log()}")

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

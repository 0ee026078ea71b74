"""Start a daemon the tests depend on and wait until it answers, or say why it did not."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    name: str,
    timeout: float,
    log: Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it is true; RuntimeError with the log if the process dies or lags."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        if ready():
            return
        time.sleep(interval)
    raise RuntimeError(f"{name} did not answer within {timeout} s:\n{log()}")

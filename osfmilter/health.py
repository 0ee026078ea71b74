"""Is each backend up? Logged once per outage, read by the metrics endpoint.

A scanner that is down fails every message; one error line per message would
bury the log, so only the change of state is logged (and its recovery).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class BackendHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up: dict[str, bool] = {}

    def ok(self, backend: str) -> None:
        with self._lock:
            was_down = self._up.get(backend) is False
            self._up[backend] = True
        if was_down:
            log.warning("%s is answering again", backend)

    def failed(self, backend: str, problem: str) -> None:
        with self._lock:
            was_up = self._up.get(backend, True)
            self._up[backend] = False
        if was_up:
            log.error("%s failed: %s (logged once until it recovers)", backend, problem)
        else:
            log.debug("%s still failing: %s", backend, problem)

    def snapshot(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._up)

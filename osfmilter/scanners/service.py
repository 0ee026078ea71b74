"""Run the configured scanners on a message, concurrently, each within its own timeout.

With both a virus and a spam scanner the slower one sets the latency, not
their sum: one runs on a worker thread while the other runs on the caller's.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from osfmilter.health import BackendHealth
from osfmilter.scanners import MessageSource, ScanContext, Scanner, ScannerError
from osfmilter.scanners.report import ScanOutcome, ScanReport

# Past a scanner's own timeout its socket deadline has fired; this only
# covers a thread that is slow to notice.
_GRACE = 1.0


@dataclass(frozen=True)
class ConfiguredScanner:
    scanner: Scanner
    timeout: float


class ScanService:
    def __init__(
        self,
        virus: ConfiguredScanner | None,
        spam: ConfiguredScanner | None,
        health: BackendHealth,
        workers: int = 32,
    ) -> None:
        self.virus = virus
        self.spam = spam
        self.health = health
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan")

    def scan(self, message: MessageSource, context: ScanContext, *, with_spam: bool) -> ScanReport:
        jobs = [s for s in (self.virus, self.spam if with_spam else None) if s is not None]
        if not jobs:
            return ScanReport()
        first, *others = jobs
        futures = [(job, self._pool.submit(self._run, job, message, context)) for job in others]
        outcomes = [self._run(first, message, context)]
        outcomes += [self._collect(job, future) for job, future in futures]
        return ScanReport(tuple(outcomes))

    def _collect(self, job: ConfiguredScanner, future: Future[ScanOutcome]) -> ScanOutcome:
        try:
            return future.result(timeout=job.timeout + _GRACE)
        except FutureTimeout:
            problem = f"no answer within {job.timeout:g} s"
            self.health.failed(job.scanner.name, problem)
            return ScanOutcome(job.scanner.name, None, problem, job.timeout)

    def _run(
        self, job: ConfiguredScanner, message: MessageSource, context: ScanContext
    ) -> ScanOutcome:
        name = job.scanner.name
        started = time.monotonic()
        try:
            verdict = job.scanner.scan(message, context, job.timeout)
        except ScannerError as exc:
            self.health.failed(name, str(exc))
            return ScanOutcome(name, None, str(exc), time.monotonic() - started)
        self.health.ok(name)
        return ScanOutcome(name, verdict, "", time.monotonic() - started)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

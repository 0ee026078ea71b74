"""Requests per minute, per token and per address: token buckets in this process's memory.

Each key (an API token's id, or the address of a request without a valid
token) has a bucket of ``per_minute`` requests that refills evenly over a
minute. A request takes one; an empty bucket is a 429 that says when the
next one is free. The clock is a monotonic one in seconds, injected so a
test can move it. Every ``osfmilter web`` process counts on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# Past this many keys, the full buckets (keys idle for a minute) are dropped.
MAX_KEYS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One bucket per key, each holding at most ``per_minute`` requests."""

    def __init__(self, per_minute: int, monotonic: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # requests a second
        self._monotonic = monotonic
        self._buckets: dict[Hashable, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Take one request: 0 if it may go on, else the seconds until one is free."""
        with self._lock:
            bucket = self._refilled(key)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def wait(self, key: Hashable) -> float:
        """The seconds until the key may make a request (0: now), taking nothing."""
        with self._lock:
            bucket = self._refilled(key)
            return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def _refilled(self, key: Hashable) -> _Bucket:
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        return bucket

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]


class ApiThrottle:
    """The API's two limits: per token, and per address for requests without a valid token."""

    def __init__(
        self, per_token: int, unauthenticated: int, monotonic: Callable[[], float]
    ) -> None:
        self.tokens = TokenBuckets(per_token, monotonic)
        self.addresses = TokenBuckets(unauthenticated, monotonic)

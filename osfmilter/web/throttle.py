"""Requests per minute, per customer and per address: token buckets in this process's memory.

Each key (a customer, the operator, or the client host of a request without
a valid token: :func:`~osfmilter.web.clients.client_key`) has a bucket of
``per_minute`` requests that refills evenly over a minute. A request takes
one; an empty bucket is a 429 that says when the next one is free. The
clock is a monotonic one in seconds, injected so a test can move it. Every
``osfmilter web`` process counts on its own.

At most :data:`MAX_KEYS` buckets are kept, the least recently used dropped
first, so no number of clients grows the memory or slows a request: a
dropped key starts again with a full bucket, which is what it would have
after a minute idle anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

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
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
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
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class ApiThrottle:
    """The API's two limits: per customer (or operator), and per client host without a token."""

    def __init__(
        self, per_token: int, unauthenticated: int, monotonic: Callable[[], float]
    ) -> None:
        self.callers = TokenBuckets(per_token, monotonic)
        self.addresses = TokenBuckets(unauthenticated, monotonic)

"""Rate windows in Redis, for fleets where the SQL database should not carry them.

Each bucket of an identity is two sorted sets: ``…:c`` holds counting slots
scored by acceptance time, ``…:p`` pending reservations scored by expiry.
One Lua script prunes, counts and reserves atomically, so concurrent milters
on every node see one consistent window. Time comes from osfmilter's clock,
not Redis's, so the relay nodes' clocks must agree (NTP).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis

from osfmilter.clock import Clock
from osfmilter.errors import DependencyError
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key

# KEYS: one per bucket.  ARGV: now, window, expiry, reservation id, ttl, the
# reservation it replaces ('' for none), limit per key.
# Returns {0} when reserved, else {bucket index (1-based), oldest counting score or ''}.
# A renewal gives the old reservation's slots back first, in the same script.
_RESERVE = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local expiry, rid, ttl, replacing = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
for i, key in ipairs(KEYS) do
  local c, p = key .. ':c', key .. ':p'
  if replacing ~= '' then redis.call('ZREM', p, replacing) end
  redis.call('ZREMRANGEBYSCORE', c, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', p, '-inf', '(' .. now)
  local limit = tonumber(ARGV[6 + i])
  if redis.call('ZCARD', c) + redis.call('ZCARD', p) >= limit then
    local oldest = redis.call('ZRANGE', c, 0, 0, 'WITHSCORES')
    return {i, oldest[2] or ''}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key .. ':p', expiry, rid)
  redis.call('EXPIRE', key .. ':p', ttl)
end
return {0}
"""

# KEYS: one per bucket.  ARGV: now, reservation id, ttl.
# Only a slot still pending becomes a counting one: an expired reservation
# pruned meanwhile is admitted again by a renewal (_RESERVE), never here.
_COMMIT = """
for _, key in ipairs(KEYS) do
  if redis.call('ZREM', key .. ':p', ARGV[2]) == 1 then
    redis.call('ZADD', key .. ':c', ARGV[1], ARGV[2])
    redis.call('EXPIRE', key .. ':c', ARGV[3])
  end
end
return 0
"""

_RELEASE = """
for _, key in ipairs(KEYS) do redis.call('ZREM', key .. ':p', ARGV[1]) end
return 0
"""


# Every key's start; tests give each run a prefix of its own.
KEY_PREFIX = "osfmilter:rate:"


class RedisError(DependencyError):
    backend = "redis"


class RedisRateLimiter:
    def __init__(
        self,
        url: str,
        clock: Clock,
        window: float,
        reservation_ttl: float,
        timeout: float,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.clock = clock
        self.window = window
        self.reservation_ttl = reservation_ttl
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)
        self._commit = self.client.register_script(_COMMIT)
        self._release = self.client.register_script(_RELEASE)
        # Keys expire once nothing in them can matter any more.
        self._key_ttl = int(window + reservation_ttl) + 60

    def _run(self, script: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        try:
            return script(keys=[self.prefix + k for k in keys], args=list(args))
        except redis.RedisError as exc:
            raise RedisError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        return self._admit(identity, tuple(buckets), replacing="")

    def renew(self, reservation: Reservation) -> Reservation | RateDenied:
        return self._admit(reservation.identity, reservation.buckets, replacing=reservation.id)

    def _admit(
        self, identity: str, buckets: tuple[Bucket, ...], replacing: str
    ) -> Reservation | RateDenied:
        now = self.clock.now().timestamp()
        keys = tuple(slot_key(identity, b.name) for b in buckets)
        reservation = Reservation(
            uuid.uuid4().hex, identity, keys, now + self.reservation_ttl, buckets
        )
        result = self._run(
            self._reserve,
            reservation.keys,
            [
                now,
                self.window,
                reservation.expires,
                reservation.id,
                self._key_ttl,
                replacing,
                *(b.limit for b in buckets),
            ],
        )
        if int(result[0]) == 0:
            return reservation
        bucket = buckets[int(result[0]) - 1]
        oldest = float(result[1]) if result[1] not in (b"", "") else None
        return RateDenied(bucket.name, bucket.limit, retry_after(oldest, now, self.window))

    def commit(self, reservation: Reservation) -> None:
        now = self.clock.now().timestamp()
        self._run(self._commit, reservation.keys, [now, reservation.id, self._key_ttl])

    def release(self, reservation: Reservation) -> None:
        self._run(self._release, reservation.keys, [reservation.id])

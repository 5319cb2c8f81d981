"""Rate limits shared by every API worker: a token bucket per key, in Redis, one round trip per check.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each
request takes one, and a request finding less than one is told how long until
there is.  The bucket lives in a Redis hash (tokens, last refill) read,
refilled and written by one Lua script, so concurrent checks from any number
of processes are serialised by Redis and the clock is Redis's own (``TIME``),
not each host's.  An idle bucket expires once it would be full again.

When Redis cannot be reached the check lets the request through (and logs it):
the limit protects the service from floods, and PostgreSQL, not Redis, is
what a submission needs; the per-tenant queue limit still holds.  After a
failure the check is not tried again for :data:`PAUSE_AFTER_FAILURE_SECONDS`,
so that requests do not each wait out the client's connection retries.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Protocol

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "sumo-k8:rate:"
#: KEYS[1] bucket; ARGV rate (tokens/s), burst.  Returns {allowed (0/1), ms until a token is there}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, wait_ms}
"""
#: How long a process lets requests through unchecked after Redis could not be reached.
PAUSE_AFTER_FAILURE_SECONDS = 5.0


class RateLimiter(Protocol):
    def acquire(self, key: str) -> float:
        """Take one request's token for ``key``: 0.0 when it may go on, else the seconds until it may."""


class Unlimited:
    def acquire(self, key: str) -> float:
        return 0.0


class RedisTokenBucket:
    """:class:`RateLimiter` over Redis; ``client`` is built on first use (the API may never submit)."""

    def __init__(self, client: Callable[[], redis.Redis], rate: float, burst: int, name: str) -> None:
        self._client_factory = client
        self._script = None
        self.rate, self.burst, self.name = rate, burst, name
        self._paused_until = -math.inf

    def acquire(self, key: str) -> float:
        if time.monotonic() < self._paused_until:
            return 0.0
        try:
            if self._script is None:
                self._script = self._client_factory().register_script(_TAKE)
            allowed, wait_ms = self._script(keys=[f"{KEY_PREFIX}{self.name}:{key}"], args=[self.rate, self.burst])
        except redis.RedisError as exc:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            log.warning("rate limit %s not checked (Redis: %s); requests go through unchecked for %g s", self.name,
                        exc, PAUSE_AFTER_FAILURE_SECONDS)
            return 0.0
        return 0.0 if int(allowed) else max(int(wait_ms), 1) / 1000


def token_bucket(rate: float, burst: int, name: str, client: Callable[[], redis.Redis]) -> RateLimiter:
    """A bucket of ``burst`` refilled at ``rate`` per second; no limit at all when ``rate`` is 0."""
    return Unlimited() if rate <= 0 else RedisTokenBucket(client, rate, burst, name)

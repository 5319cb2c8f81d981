"""Open streams counted per group (a tenant's log streams) over every process of the service.

Each API worker serves its own streams, so a count in one process's memory would let a tenant open the limit
once per worker, and would forget nothing when a worker crashes.  The count lives in Redis instead: one sorted
set per group, a member per open stream, scored with the time its entry expires.  A stream renews its entry
while it is open (:meth:`StreamRegistry.renew`) and removes it when it ends; an entry nobody renewed for
``ttl_seconds`` (its worker crashed, or lost Redis) no longer counts.  Times are Redis's own clock, so API
hosts whose clocks differ count alike; each operation is one script, so two workers admitting a stream at the
same moment cannot both take the last place.
"""
from __future__ import annotations

import abc

import redis

from core.unavailable import Unavailable


class RegistryUnavailable(Unavailable):
    """Redis, where open streams are counted, cannot be reached."""


class StreamRegistry(abc.ABC):
    """Where open streams are counted."""

    @abc.abstractmethod
    def acquire(self, group: str, stream_id: str, limit: int) -> bool:
        """Count ``stream_id`` in ``group`` if fewer than ``limit`` are open there; False when they are not."""

    @abc.abstractmethod
    def renew(self, group: str, stream_id: str) -> None:
        """Keep ``stream_id`` counted for another TTL (counted again if its entry had expired)."""

    @abc.abstractmethod
    def release(self, group: str, stream_id: str) -> None:
        """Stop counting ``stream_id``; releasing one that is not counted is fine."""

    @abc.abstractmethod
    def count(self, group: str) -> int:
        """How many streams of ``group`` count now."""


_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
_ACQUIRE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RENEW = _NOW_MS + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisStreamRegistry(StreamRegistry):
    """The registry in Redis (see the module's docstring); Redis away is :class:`RegistryUnavailable`."""

    def __init__(self, client: redis.Redis, ttl_seconds: float, prefix: str = "sumo-k8:streams:") -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._count = client.register_script(_COUNT)

    @classmethod
    def from_url(cls, url: str, ttl_seconds: float) -> "RedisStreamRegistry":
        if not url:
            raise RuntimeError("REDIS_URL is not set (make run sets it for the embedded server)")
        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), ttl_seconds)

    def _key(self, group: str) -> str:
        return self.prefix + group

    def acquire(self, group: str, stream_id: str, limit: int) -> bool:
        with _reachable():
            return bool(self._acquire(keys=[self._key(group)], args=[stream_id, limit, self.ttl_ms]))

    def renew(self, group: str, stream_id: str) -> None:
        with _reachable():
            self._renew(keys=[self._key(group)], args=[stream_id, self.ttl_ms])

    def release(self, group: str, stream_id: str) -> None:
        with _reachable():
            self.client.zrem(self._key(group), stream_id)

    def count(self, group: str) -> int:
        with _reachable():
            return int(self._count(keys=[self._key(group)]))


class _reachable:
    """Redis's connection errors and timeouts as :class:`RegistryUnavailable` (the API's 503)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            raise RegistryUnavailable("Redis, where open log streams are counted, cannot be reached; "
                                      "try again shortly") from exc

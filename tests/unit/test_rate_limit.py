"""core.rate_limit without a Redis: no limit at rate 0, and a Redis that cannot be reached lets requests through."""
from __future__ import annotations

import logging

import redis

from core.rate_limit import RedisTokenBucket, Unlimited, token_bucket
from core.waits import free_port


def test_rate_zero_is_no_limit():
    limiter = token_bucket(0, 10, "submit", client=lambda: None)
    assert isinstance(limiter, Unlimited) and limiter.acquire("t") == 0.0


def test_an_unreachable_redis_lets_requests_through_and_is_not_asked_again_at_once(caplog):
    port = free_port()  # nothing listens there
    limiter = token_bucket(1, 1, "submit", client=lambda: redis.Redis(port=port, socket_connect_timeout=1))
    assert isinstance(limiter, RedisTokenBucket)
    with caplog.at_level(logging.WARNING, logger="core.rate_limit"):
        assert [limiter.acquire("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert len([r for r in caplog.records if "not checked" in r.getMessage()]) == 1, "asked once, then paused"

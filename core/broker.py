"""Dramatiq's Redis broker, with idle workers woken the moment a message arrives.

Dramatiq's Redis consumer polls an empty queue and sleeps between polls, up
to the worker timeout (100 ms here): every hop between processes (API →
admission, admission → start, watcher → status) waited up to that long for
the next poll.  Here every immediate enqueue also pushes a token onto the
queue's wake-up list, and an idle consumer waits on that list with ``BLPOP``
instead of sleeping.  The wait is still bounded by the worker timeout, so
fetching, heartbeats, acknowledgements, delayed messages and the dead-worker
maintenance go on at the same pace as before; only the latency of a new
message changes (from up to the timeout to one Redis round trip).

Tokens are hints, not messages: the list is capped at :data:`WAKE_TOKENS`
(one woken consumer fetches a whole batch), a lost or stale token costs at
most one timeout or one empty fetch, and a process without this class (an
older version) still finds the messages by polling.
"""
from __future__ import annotations

import logging
from typing import Iterable

import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

log = logging.getLogger(__name__)

#: Tokens kept per queue: enough to wake a consumer in each of a few worker processes.
WAKE_TOKENS = 4


def wake_key(queue_name: str) -> str:
    return f"sumo-k8:wake:{queue_name}"


class WakingRedisBroker(RedisBroker):
    """A RedisBroker whose enqueues wake idle consumers of the queue."""

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        message = super().enqueue(message, delay=delay)
        if delay is None:  # a delayed message is moved to its queue later, by this same method
            key = wake_key(message.queue_name)
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.lpush(key, 1).ltrim(key, 0, WAKE_TOKENS - 1).execute()
            except redis.RedisError:
                log.debug("wake-up for %s not sent; the message is found by the next poll", key, exc_info=True)
        return message

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        # The inner consumer never sleeps (idle timeout 0): the wait happens on the wake-up list.
        return _WakingConsumer(super().consume(queue_name, prefetch, timeout=0), self.client,
                               wake_key(queue_name), timeout / 1000)


class _WakingConsumer(Consumer):
    """Dramatiq's Redis consumer, waiting for a wake-up token instead of sleeping when the queue is empty."""

    def __init__(self, inner: Consumer, client: redis.Redis, key: str, idle_wait_s: float) -> None:
        self.inner, self.client, self.key = inner, client, key
        self.idle_wait_s = max(idle_wait_s, 0.001)  # BLPOP's 0 would mean "wait forever"

    def __next__(self) -> MessageProxy | None:
        message = next(self.inner)
        if message is None:
            try:
                self.client.blpop([self.key], timeout=self.idle_wait_s)
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # as Dramatiq's consumer reports it
                raise ConnectionClosed(exc) from None
        return message

    def ack(self, message: MessageProxy) -> None:
        self.inner.ack(message)

    def nack(self, message: MessageProxy) -> None:
        self.inner.nack(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self.inner.requeue(messages)

    def close(self) -> None:
        self.inner.close()

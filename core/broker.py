"""Dramatiq's Redis broker, with idle workers woken the moment a message arrives.

Dramatiq's Redis consumer polls an empty queue and sleeps between polls, up
to the worker timeout (100 ms here): every hop between processes (API →
admission, admission → start, watcher → status) waited up to that long for
the next poll.  Here every immediate enqueue also pushes a token onto the
queue's wake-up list, and an idle consumer waits on that list with ``BLPOP``
instead of sleeping.  The wait is still bounded by the worker timeout, so
fetching, heartbeats, acknowledgements, delayed messages and the dead-worker
maintenance go on at the same pace as before; only the latency of a new
message changes (from up to the timeout to one Redis round trip).  A burst
of sends (:meth:`WakingRedisBroker.burst`) wakes each queue twice, not once
per message.

Tokens are hints, not messages: the list is capped at :data:`WAKE_TOKENS`
(one woken consumer fetches a whole batch), a lost or stale token costs at
most one timeout or one empty fetch, and a process without this class (an
older version) still finds the messages by polling.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._bursts = threading.local()

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        message = super().enqueue(message, delay=delay)
        if delay is None:  # a delayed message is moved to its queue later, by this same method
            burst = getattr(self._bursts, "queues", None)
            if burst is None or message.queue_name not in burst:
                self._wake([message.queue_name])
                if burst is not None:
                    burst[message.queue_name] = False
            else:
                burst[message.queue_name] = True  # woken at its first message; once more at the end
        return message

    @contextmanager
    def burst(self):
        """Messages sent in the block wake each queue at its first message and once more at the end.

        A wake-up costs a Redis round trip; an admission pass sending a hundred
        messages needs two per queue, not a hundred: the first gets a consumer
        fetching (a whole batch at a time), the last makes sure nothing sent
        after that fetch waits for a poll.
        """
        if getattr(self._bursts, "queues", None) is not None:  # nested: the outer block wakes
            yield
            return
        self._bursts.queues = {}
        try:
            yield
        finally:
            queues, self._bursts.queues = self._bursts.queues, None
            self._wake([queue for queue, more in queues.items() if more])

    def _wake(self, queues: list[str]) -> None:
        if not queues:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.lpush(wake_key(queue), 1).ltrim(wake_key(queue), 0, WAKE_TOKENS - 1)
                pipe.execute()
        except redis.RedisError:
            log.debug("wake-up for %s not sent; the messages are found by the next poll", queues, exc_info=True)

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

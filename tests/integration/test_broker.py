"""The waking Redis broker (core/broker.py) on a real Redis: an idle consumer hears of a message at once."""
from __future__ import annotations

import threading
import time

import pytest
from dramatiq.message import Message

from core.broker import WAKE_TOKENS, WakingRedisBroker, wake_key
from devstack.services import start_redis, wait_for

IDLE_WAIT_MS = 30_000  # far longer than any bound below: only a wake-up can beat it


@pytest.fixture
def broker(tmp_path):
    service = start_redis(tmp_path / "redis", persistent=False)
    broker = WakingRedisBroker(url=service.url)
    broker.declare_queue("q")
    yield broker
    broker.close()
    service.stop()


def _message(n: int = 0) -> Message:
    return Message(queue_name="q", actor_name="a", args=(n,), kwargs={}, options={})


def _blocked_in_blpop(broker) -> bool:
    return any(c.get("cmd") == "blpop" for c in broker.client.client_list())


def test_an_idle_consumer_gets_a_new_message_without_waiting_out_its_poll(broker):
    consumer = broker.consume("q", prefetch=1, timeout=IDLE_WAIT_MS)
    received: list = []

    def consume():
        while not received:
            message = next(consumer)
            if message is not None:
                received.append((time.monotonic(), message))

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    wait_for(lambda: _blocked_in_blpop(broker), 10, "the consumer waiting on its wake-up list")
    sent = time.monotonic()
    broker.enqueue(_message(7))
    th.join(timeout=10)
    assert received, f"the message waited for the {IDLE_WAIT_MS} ms idle poll: no wake-up"
    at, message = received[0]
    assert message.args == (7,) and at - sent < 10
    consumer.ack(message)
    consumer.close()


def test_wake_up_tokens_are_capped_and_delayed_messages_send_none(broker):
    broker.enqueue(_message(), delay=60_000)
    assert broker.client.llen(wake_key("q")) == 0, "a delayed message wakes its queue when it is moved there"
    for n in range(3 * WAKE_TOKENS):
        broker.enqueue(_message(n))
    assert broker.client.llen(wake_key("q")) == WAKE_TOKENS


def test_a_burst_wakes_each_queue_at_its_first_message_and_at_its_end(broker):
    broker.declare_queue("r")
    pushes = []
    wake = broker._wake
    broker._wake = lambda queues: (pushes.append(list(queues)), wake(queues))
    with broker.burst():
        for n in range(10):
            broker.enqueue(_message(n))
        assert pushes == [["q"]], "the first message woke its queue at once"
        broker.enqueue(Message(queue_name="r", actor_name="a", args=(), kwargs={}, options={}))
    assert pushes == [["q"], ["r"], ["q"]], "q once more at the end; r had one message: woken once"
    assert broker.client.llen(wake_key("q")) == 2 and broker.client.llen(wake_key("r")) == 1
    consumer = broker.consume("q", prefetch=20, timeout=IDLE_WAIT_MS)
    got = []
    while len(got) < 10:
        message = next(consumer)
        if message is not None:
            got.append(message.args[0])
            consumer.ack(message)
    assert sorted(got) == list(range(10))
    consumer.close()

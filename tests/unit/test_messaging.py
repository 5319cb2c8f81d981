"""Where the bus sends a job's start: the executor's start actor (a pure routing rule; Dramatiq's in-memory broker)."""
from __future__ import annotations

import pytest
from dramatiq.brokers.stub import StubBroker

from core.messaging import QUEUES, ROUTES, MessageBus


@pytest.mark.parametrize("executor, actor", [("local", "run_simulation"), ("kubernetes", "start_job")])
def test_start_goes_to_the_executors_start_actor(executor, actor):
    broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    MessageBus(broker, executor).start_job("job-1")
    depths = {q: broker.queues[q].qsize() for q in QUEUES}
    assert depths == {q: int(q == ROUTES[actor].queue) for q in QUEUES}
    message = broker.queues[ROUTES[actor].queue].get_nowait()
    assert b'"actor_name":"%s"' % actor.encode() in message and b'"job-1"' in message


def test_unknown_executor_is_refused():
    with pytest.raises(KeyError):
        MessageBus(StubBroker(), "nomad")

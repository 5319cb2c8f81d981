"""Where the bus sends admitted jobs' starts: the executor's start actor, batched or not (a pure routing rule;
Dramatiq's in-memory broker)."""
from __future__ import annotations

import json

import pytest
from dramatiq.brokers.stub import StubBroker

from core.messaging import QUEUES, ROUTES, START_BATCH, MessageBus


def _broker() -> StubBroker:
    broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def _messages(broker: StubBroker, queue: str) -> list[dict]:
    found = []
    while broker.queues[queue].qsize():
        found.append(json.loads(broker.queues[queue].get_nowait()))
    return found


def test_local_starts_are_one_simulation_message_per_job():
    broker = _broker()
    MessageBus(broker, "local").start_jobs(["job-1", "job-2", "job-3"])
    depths = {q: broker.queues[q].qsize() for q in QUEUES}
    assert depths == {q: 3 * (q == ROUTES["run_simulation"].queue) for q in QUEUES}
    messages = _messages(broker, ROUTES["run_simulation"].queue)
    assert [(m["actor_name"], m["args"]) for m in messages] == [("run_simulation", [f"job-{i}"]) for i in (1, 2, 3)]


def test_kubernetes_starts_go_in_batches_of_start_batch():
    broker = _broker()
    ids = [f"job-{i}" for i in range(2 * START_BATCH + 3)]
    MessageBus(broker, "kubernetes").start_jobs(ids)
    depths = {q: broker.queues[q].qsize() for q in QUEUES}
    assert depths == {q: 3 * (q == ROUTES["start_jobs"].queue) for q in QUEUES}
    messages = _messages(broker, ROUTES["start_jobs"].queue)
    assert {m["actor_name"] for m in messages} == {"start_jobs"}
    assert [m["args"] for m in messages] == [[ids[:START_BATCH]], [ids[START_BATCH:2 * START_BATCH]], [ids[2 * START_BATCH:]]]


def test_no_admitted_jobs_send_nothing():
    broker = _broker()
    MessageBus(broker, "kubernetes").start_jobs([])
    assert all(broker.queues[q].qsize() == 0 for q in QUEUES)


def test_unknown_executor_is_refused():
    with pytest.raises(KeyError):
        MessageBus(StubBroker(), "nomad")

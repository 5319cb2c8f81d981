"""The message bus: the Dramatiq broker and every message the service sends.

Senders (the API, the sweeper, executors) and receivers (``workers.actors``)
agree on queue and actor names through :data:`ROUTES`, so a process can send
a message without importing the actor that handles it — the API never loads
worker code.  Every message is safe to deliver twice: receivers are
idempotent.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

import dramatiq
from dramatiq.message import Message

from core.broker import WakingRedisBroker
from core.domain.states import JobStatus, StatusEvent
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    queue: str
    actor: str


#: actor name → where its messages go.  Operators see these queue names in Redis.
ROUTES = {
    "admit_tenant": Route("admission", "admit_tenant"),
    "start_jobs": Route("executor", "start_jobs"),
    "cancel_job": Route("executor", "cancel_job"),
    "reconcile_tenant": Route("executor", "reconcile_tenant"),
    "apply_status": Route("status", "apply_status"),
    "collect_results": Route("results", "collect_results"),
    "run_simulation": Route("simulations", "run_simulation"),
}
QUEUES = sorted({r.queue for r in ROUTES.values()})

#: Which actor starts admitted jobs, per executor, and how many jobs one message carries.  The
#: local executor's start is nothing but the simulation message, so it is sent directly, one per
#: job (not two messages); Kubernetes needs ``start_jobs`` to create its objects, and one message
#: there carries up to START_BATCH jobs, started one after the other by one worker thread: a pass
#: admitting many sends several messages, which the worker threads take in parallel, and pays one
#: message's dispatch, fetch and acknowledgement and one database read per batch instead of per job.
START_BATCH = 8
START_ACTORS = {"local": ("run_simulation", None), "kubernetes": ("start_jobs", START_BATCH)}
#: The states in which a job still depends on its start message, per executor: the sweeper re-sends the
#: start of a job that stays in one of them (a lost message would leave it there).  The local executor's
#: message runs the job to its end (PENDING: waiting for a slot; RUNNING); a Kubernetes start is done once
#: the Job exists, and the watcher reports from there.  A re-send finds the job already handled and returns.
AWAITING_START = {"local": (JobStatus.ADMITTED, JobStatus.PENDING, JobStatus.RUNNING),
                  "kubernetes": (JobStatus.ADMITTED,)}

#: Out of a million Redis commands, how many also re-queue the messages of
#: workers whose heartbeat stopped.  Dramatiq's default (1000) can leave a
#: dead worker's message waiting a minute on a quiet system; at 20000 idle
#: consumers polling every 100 ms notice within seconds.
MAINTENANCE_CHANCE = 20_000

#: A lost admission message blocks new ones for at most this long (the sweeper forces sooner).
ADMISSION_PENDING_TTL = 60

_brokers: dict[str, WakingRedisBroker] = {}


def _pending_key(tenant_id: str) -> str:
    return f"sumo-k8:admission-pending:{tenant_id}"


def get_broker(settings: Settings) -> WakingRedisBroker:
    """One broker per Redis URL per process, also installed as Dramatiq's global broker."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (make run sets it for the embedded server)")
    broker = _brokers.get(settings.redis_url)
    if broker is None:
        broker = WakingRedisBroker(
            url=settings.redis_url,
            heartbeat_timeout=settings.redis_heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
        for queue in QUEUES:
            broker.declare_queue(queue)
        dramatiq.set_broker(broker)
        _brokers[settings.redis_url] = broker
    return broker


class MessageBus:
    """Typed senders for each message; the only code that builds Dramatiq messages."""

    def __init__(self, broker: dramatiq.Broker, executor: str) -> None:
        self.broker = broker
        self._start_actor, self._start_batch = START_ACTORS[executor]

    def best_effort(self, send, *args) -> bool:
        """Send after a commit: a broker outage must not turn a committed change into an error.

        Whatever is lost here the sweeper re-sends from the database's state.
        """
        try:
            send(*args)
            return True
        except Exception:  # noqa: BLE001 — any broker failure is handled the same way
            log.warning("message %s%r not sent; the sweeper will re-send it", send.__name__, args, exc_info=True)
            return False

    def _send(self, actor: str, *args, delay_ms: int | None = None) -> None:
        route = ROUTES[actor]
        message = Message(queue_name=route.queue, actor_name=route.actor, args=args, kwargs={}, options={})
        self.broker.enqueue(message, delay=delay_ms)

    def request_admission(self, tenant_id: str) -> None:
        """Ask for an admission pass over ``tenant_id``'s queue, at most one pending per tenant.

        One pass admits everything that fits, so further requests while one
        is pending add nothing but queue depth — and would put one tenant's
        deep queue in front of every other tenant's.  The pending marker is
        cleared by the actor as it starts (:meth:`admission_started`), so a
        job committed after that sends a new request.  A marker whose message
        was lost expires after ADMISSION_PENDING_TTL; the sweeper then re-sends.
        """
        if self.broker.client.set(_pending_key(tenant_id), 1, nx=True, ex=ADMISSION_PENDING_TTL):
            self._send("admit_tenant", tenant_id)

    def admission_started(self, tenant_id: str) -> None:
        self.broker.client.delete(_pending_key(tenant_id))

    def start_jobs(self, job_ids: list[str]) -> None:
        """Start admitted jobs on the configured executor (see :data:`START_ACTORS`)."""
        with self.burst():
            if self._start_batch is None:
                for job_id in job_ids:
                    self._send(self._start_actor, job_id)
                return
            for i in range(0, len(job_ids), self._start_batch):
                self._send(self._start_actor, list(job_ids[i:i + self._start_batch]))

    def burst(self):
        """A block of sends that wakes idle consumers once or twice per queue, not per message."""
        burst = getattr(self.broker, "burst", None)
        return burst() if burst is not None else nullcontext()

    def reconcile_tenant(self, tenant_id: str) -> None:
        self._send("reconcile_tenant", tenant_id)

    def cancel_job(self, job_id: str) -> None:
        self._send("cancel_job", job_id)

    def publish_status(self, event: StatusEvent) -> None:
        self._send("apply_status", event.to_message())

    def collect_results(self, job_id: str, *, delay_ms: int | None = None) -> None:
        self._send("collect_results", job_id, delay_ms=delay_ms)

    def run_simulation(self, job_id: str) -> None:
        self._send("run_simulation", job_id)

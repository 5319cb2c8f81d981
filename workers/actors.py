"""Every Dramatiq actor.  Each parses its message and calls one use case.

Queue and actor names come from :data:`core.messaging.ROUTES`, the same table
senders use.  Every actor is idempotent: a message may arrive twice.
"""
from __future__ import annotations

import functools
import logging

import dramatiq

from core import gc_policy
from core.domain.states import StatusEvent
from core.messaging import ROUTES, get_broker
from core.services import admission, lifecycle, tenants
from core.bootstrap import get_context
from core.settings import get_settings
from core.unavailable import Unavailable
from workers.local_simulation import SandboxCheck
from workers.logging_setup import configure_logging

configure_logging(get_settings().log_level)
get_broker(get_settings()).add_middleware(SandboxCheck())  # a simulation worker that cannot sandbox exits at boot
log = logging.getLogger(__name__)

RETRY = dict(max_retries=10, min_backoff=200, max_backoff=30_000)


def _actor(name: str, **options):
    route = ROUTES[name]

    def decorate(fn):
        @functools.wraps(fn)
        def handle(*args):
            try:
                return fn(*args)
            except Unavailable as exc:
                # A dependency away (a restart, an outage) is expected to pass: one line and the message's
                # retry (dramatiq.Retry counts like any failure), not a traceback per attempt.
                log.warning("%s%r: %s; retrying", name, args, exc)
                raise dramatiq.Retry(str(exc)) from exc

        return dramatiq.actor(handle, actor_name=route.actor, queue_name=route.queue, **{**RETRY, **options})

    return decorate


@_actor("admit_tenant")
def admit_tenant(tenant_id: str) -> None:
    admission.admit_tenant(get_context(), tenant_id)


@_actor("start_jobs")
def start_jobs(job_ids: list[str]) -> None:
    lifecycle.start_jobs(get_context(), job_ids)


@_actor("reconcile_tenant")
def reconcile_tenant(tenant_id: str) -> None:
    tenants.reconcile(get_context(), tenant_id)


@_actor("cancel_job")
def cancel_job(job_id: str) -> None:
    lifecycle.stop_in_executor(get_context(), job_id)


@_actor("apply_status")
def apply_status(event: dict) -> None:
    lifecycle.apply_status(get_context(), StatusEvent.from_message(event))


@_actor("collect_results")
def collect_results(job_id: str) -> None:
    lifecycle.collect_results(get_context(), job_id)


def _simulation_time_limit_ms() -> int:
    settings = get_settings()
    return int(settings.max_job_duration_hours * 3600 * 1000) + 10 * 60 * 1000


@_actor("run_simulation", time_limit=_simulation_time_limit_ms(), max_retries=3)
def run_simulation(job_id: str) -> None:
    """The local executor's run: blocks this worker thread for the length of the simulation."""
    from workers.local_simulation import run

    run(get_context(), job_id)


gc_policy.settle()  # this module is what a Dramatiq worker process imports: everything above lives as long as it

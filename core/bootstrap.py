"""The composition root: which adapter each process uses, decided in one place.

Entrypoints (``api/``, ``workers/``) call :func:`get_context`; tests call
:func:`bootstrap` with their own settings (and, where they need one, their
own executor).  Everything the executors and use cases need from the
settings (archive limits, the run's resource bounds) is handed to them here,
so nothing below this module imports it back.
"""
from __future__ import annotations

import os
from typing import Callable

from core.executors.base import Executor
from core.scenario import ArchiveLimits
from core.services.context import Context
from core.settings import Settings, get_settings


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_uncompressed_bytes=settings.max_uncompressed_mb * 1024 * 1024,
        max_entries=settings.max_archive_entries,
        max_ratio=settings.max_compression_ratio,
    )


def bootstrap(settings: Settings, *, executor: Executor | None = None) -> Context:
    """A :class:`Context` whose adapters follow ``settings``; ``executor`` replaces the configured one."""

    def build_engine(autocommit: bool):
        from core.db.engine import get_engine

        return get_engine(settings, autocommit=autocommit)

    def build_bus():
        from core.messaging import MessageBus, get_broker

        return MessageBus(get_broker(settings), settings.executor)

    def build_store():
        from core.storage.factory import build_store as store_for

        return store_for(settings)

    def build_streams():
        from core.stream_registry import RedisStreamRegistry

        return RedisStreamRegistry.from_url(settings.redis_url, ttl_seconds=3 * settings.log_stream_heartbeat_seconds)

    build_executor: Callable[[Context], Executor] = (lambda _ctx: executor) if executor is not None \
        else _executor_builder(settings)
    return Context(settings=settings, limits=archive_limits(settings), build_engine=build_engine,
                   build_bus=build_bus, build_store=build_store, build_executor=build_executor,
                   build_streams=build_streams)


def _executor_builder(settings: Settings) -> Callable[[Context], Executor]:
    def build(ctx: Context) -> Executor:
        if settings.executor == "local":
            from core.executors.local import LocalExecutor, slot_pool

            return LocalExecutor(settings.work_root, ctx.bus, slot_pool(settings.work_root, settings.local_max_parallel))
        from core.executors.kubernetes import KubernetesExecutor
        from core.services import collect_uploads

        return KubernetesExecutor(settings, ctx.bus, store=ctx.store, limits=ctx.limits,
                                  uploads=lambda job_id: collect_uploads.recorded(ctx, job_id))

    return build


def local_runner(ctx: Context):
    """The local executor's simulation runner for a worker consuming the simulations queue.

    With LOCAL_SANDBOX=on it first proves the sandbox works on this machine (a test run) and raises
    :class:`~core.executors.sandbox_host.SandboxUnavailable` saying why not; the worker then refuses to
    start.
    """
    import shutil

    from core.executors.local import default_sumo_binary, slot_pool
    from core.executors.local_runner import LocalRunner
    from core.executors.sandbox_host import Sandbox

    settings = ctx.settings
    slots = slot_pool(settings.work_root, settings.local_max_parallel)
    sumo_binary = settings.sumo_binary or default_sumo_binary()
    sandbox = None
    if settings.local_sandbox == "on":
        sandbox = Sandbox.discover(sumo_binary=sumo_binary, uid_base=settings.local_sandbox_uid_base)
        sandbox.check(sumo_binary, settings.work_root / f".sandbox-check-{os.getpid()}")
    return LocalRunner(
        work_root=settings.work_root,
        store=ctx.store,
        publish=ctx.bus.publish_status,
        slots=slots,
        sumo_binary=sumo_binary,
        limits=ctx.limits,
        sandbox=sandbox,
        max_output_mb=settings.max_output_mb,
        max_log_mb=settings.max_log_mb,
        prlimit=shutil.which("prlimit"),
        log_tail_lines=settings.log_tail_lines,
    )


_context: Context | None = None


def get_context() -> Context:
    """This process's context, built on first use."""
    global _context
    if _context is None:
        _context = bootstrap(get_settings())
    return _context

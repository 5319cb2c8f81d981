"""The composition root: builds the adapters a process needs, once.

Entrypoints call :func:`get_context`; tests build a :class:`Context` from
their own settings.  Heavy adapters (the executor, cloud SDKs) are built on
first use so that the API process never loads what it does not call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property

from core.db.engine import get_engine
from core.db.uow import sql_single_statement, sql_unit_of_work
from core.executors.base import Executor, JobSpec
from core.messaging import MessageBus, get_broker
from core.scenario import ArchiveLimits
from core.services.recent_keys import RecentKeys
from core.settings import Settings, get_settings
from core.storage.base import ObjectStore


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_uncompressed_bytes=settings.max_uncompressed_mb * 1024 * 1024,
        max_entries=settings.max_archive_entries,
        max_ratio=settings.max_compression_ratio,
    )


@dataclass
class Context:
    settings: Settings
    _executor: Executor | None = field(default=None, repr=False)

    @cached_property
    def engine(self):
        return get_engine(self.settings)

    @cached_property
    def uow(self):
        """A transaction (BEGIN … COMMIT) and the repositories inside it."""
        return sql_unit_of_work(self.engine)

    @cached_property
    def statement(self):
        """The repositories on an autocommit connection, for a unit of one statement (see core.db.uow)."""
        return sql_single_statement(get_engine(self.settings, autocommit=True))

    @cached_property
    def bus(self) -> MessageBus:
        return MessageBus(get_broker(self.settings), self.settings.executor)

    @cached_property
    def store(self) -> ObjectStore:
        from core.storage.factory import build_store

        return build_store(self.settings)

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = build_executor(self.settings, self.bus, self.store)
        return self._executor

    @cached_property
    def recent_keys(self) -> RecentKeys:
        """Keys this process verified lately (used by submissions only, see core.services.recent_keys)."""
        return RecentKeys(self.settings.key_cache_seconds)

    @property
    def limits(self) -> ArchiveLimits:
        return archive_limits(self.settings)

    def job_spec(self, job: dict, namespace: str) -> JobSpec:
        return JobSpec(
            job_id=str(job["job_id"]),
            tenant_id=job["tenant_id"],
            namespace=namespace,
            cpu_request=job["cpu_request"],
            memory_gi=job["memory_gi"],
            config_file=job["config_file"],
            input_key=job["input_key"],
            deadline_seconds=max(1, int(self.settings.max_job_duration_hours * 3600)),
        )


def build_executor(settings: Settings, bus: MessageBus, store: ObjectStore) -> Executor:
    if settings.executor == "local":
        from core.executors.local import LocalExecutor, slot_pool

        return LocalExecutor(settings.work_root, bus, slot_pool(settings.work_root, settings.local_max_parallel))
    from core.executors.kubernetes import KubernetesExecutor

    return KubernetesExecutor(settings, bus, store=store)


_context: Context | None = None


def get_context() -> Context:
    global _context
    if _context is None:
        _context = Context(get_settings())
    return _context

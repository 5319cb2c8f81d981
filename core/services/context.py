"""What every use case receives: the settings and the adapters, built elsewhere.

A :class:`Context` does not decide which adapter a process uses: the
composition root (:mod:`core.bootstrap`) hands it one builder per adapter.
Adapters are built on first use, so a process never loads what it does not
call (the API never builds the executor's client or a cloud SDK it is not
configured for).  Tests build one with :func:`core.bootstrap.bootstrap`,
optionally with their own executor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from core.db.uow import sql_single_statement, sql_unit_of_work
from core.executors.base import Executor, JobSpec
from core.rate_limit import RateLimiter, token_bucket
from core.scenario import ArchiveLimits
from core.services.recent_keys import RecentKeys
from core.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import sqlalchemy as sa

    from core.messaging import MessageBus
    from core.storage.base import ObjectStore
    from core.stream_registry import StreamRegistry


@dataclass
class Context:
    settings: Settings
    limits: ArchiveLimits
    build_engine: Callable[[bool], "sa.Engine"] = field(repr=False)       # autocommit or not
    build_bus: Callable[[], "MessageBus"] = field(repr=False)
    build_store: Callable[[], "ObjectStore"] = field(repr=False)
    build_executor: Callable[["Context"], Executor] = field(repr=False)
    build_streams: Callable[[], "StreamRegistry"] | None = field(default=None, repr=False)

    @cached_property
    def engine(self) -> "sa.Engine":
        return self.build_engine(False)

    @cached_property
    def uow(self):
        """A transaction (BEGIN … COMMIT) and the repositories inside it."""
        return sql_unit_of_work(self.engine)

    @cached_property
    def statement(self):
        """The repositories on an autocommit connection, for a unit of one statement (see core.db.uow)."""
        return sql_single_statement(self.build_engine(True))

    @cached_property
    def bus(self) -> "MessageBus":
        return self.build_bus()

    @cached_property
    def store(self) -> "ObjectStore":
        return self.build_store()

    @cached_property
    def executor(self) -> Executor:
        return self.build_executor(self)

    @cached_property
    def streams(self) -> "StreamRegistry":
        """Where open log streams are counted over every process (see core.stream_registry)."""
        if self.build_streams is None:
            raise RuntimeError("this context has no stream registry")
        return self.build_streams()

    @cached_property
    def recent_keys(self) -> RecentKeys:
        """Keys this process verified lately (used by submissions only, see core.services.recent_keys)."""
        return RecentKeys(self.settings.key_cache_seconds)

    @cached_property
    def submission_rate(self) -> RateLimiter:
        """Submissions per tenant and second (SUBMIT_RATE_PER_SECOND, SUBMIT_BURST), counted in the bus's Redis."""
        return token_bucket(self.settings.submit_rate_per_second, self.settings.submit_burst, "submit",
                            lambda: self.bus.broker.client)

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

"""The executor interface and the job description it receives."""
from __future__ import annotations

import abc
from dataclasses import dataclass

from core.storage.base import ObjectStore
from core.unavailable import Unavailable


@dataclass(frozen=True)
class JobSpec:
    """Everything an executor needs to run one job, derived from its row."""

    job_id: str
    tenant_id: str
    namespace: str
    cpu_request: int
    memory_gi: int
    config_file: str
    input_key: str
    deadline_seconds: int

    @property
    def result_prefix(self) -> str:
        return f"results/{self.tenant_id}/{self.job_id}/"

    @property
    def log_key(self) -> str:
        return self.result_prefix + LOG_NAME


class StillRunning(RuntimeError):
    """The executor has not stopped the job yet (e.g. a cancel is in progress); collect later."""


class CannotCollectYet(RuntimeError):
    """What collecting needs cannot run now, for a reason that may last (Kubernetes cannot start the
    collector pod: no room on any node, an image it cannot pull); the sweeper's re-sends try again,
    so no worker thread waits it out."""


class ExecutorUnavailable(Unavailable):
    """What the executor runs on (the Kubernetes API server) cannot be reached, or answers that it cannot
    serve now."""


@dataclass(frozen=True)
class CollectedResults:
    """What a finished job left behind, after it was copied to the result store."""

    files: list[dict]          # [{name, size, sha256}], name relative to the job's result prefix
    statistics: bytes | None   # SUMO's --statistic-output, parsed into KPIs by the caller
    log_archived: bool


LOG_NAME = "sumo.log"
STATISTICS_NAME = "sumo-statistics.xml"


class Executor(abc.ABC):
    name: str = "abstract"

    def ensure_tenant(self, tenant: dict) -> None:
        """Create or update what a tenant needs before its jobs run (idempotent).

        ``tenant`` is the tenant row (tenant_id, namespace, max_cpu, max_memory_gi,
        max_concurrent_jobs).  The local executor needs nothing.
        """

    @abc.abstractmethod
    def start(self, spec: JobSpec) -> None:
        """Start the job; starting an already started job is a no-op."""

    @abc.abstractmethod
    def cancel(self, spec: JobSpec) -> None:
        """Stop the job if it runs and make sure it never starts; idempotent."""

    @abc.abstractmethod
    def read_live_log(self, spec: JobSpec, start: int, limit: int) -> bytes | None:
        """Up to ``limit`` bytes of the running job's log from ``start``; None when there is no live log.

        Raises :class:`ExecutorUnavailable` when the log cannot be read now."""

    @abc.abstractmethod
    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        """Copy the finished job's outputs and log into ``store``; safe to repeat.

        Raises :class:`StillRunning` while the run has not stopped (a job can be
        CANCELLED in the database before its process is gone); the caller retries.
        Raises :class:`CannotCollectYet` when collecting cannot run now.
        """

    @abc.abstractmethod
    def release(self, spec: JobSpec) -> None:
        """Drop what the executor keeps for a job whose results are safely stored."""

    @abc.abstractmethod
    def capacity(self) -> dict:
        """What the executor can run on: the machine (local) or the nodes (kubernetes).

        Raises :class:`ExecutorUnavailable` when that cannot be read now."""

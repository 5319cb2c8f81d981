"""The executor interface and the job description it receives."""
from __future__ import annotations

import abc
from dataclasses import dataclass

from core.domain.states import StatusEvent
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
class LogPosition:
    """Where a reader of a job's log is: ``offset`` bytes delivered so far, and, for an executor whose live
    log cannot be read by byte offset (the Kubernetes pod log: no offset parameter, and the kubelet rotates
    it), ``mark``, the executor's own resume point (e.g. the timestamp of the last line delivered).

    Its :meth:`token` is the SSE event id a client sends back as ``Last-Event-ID``: ``"<offset>"`` or
    ``"<offset>@<mark>"``.  Once the log is archived only ``offset`` counts.
    """

    offset: int = 0
    mark: str | None = None

    def token(self) -> str:
        return str(self.offset) if self.mark is None else f"{self.offset}@{self.mark}"

    @classmethod
    def parse(cls, token: str) -> "LogPosition":
        """The position a token names; ValueError for anything this service did not send."""
        offset, sep, mark = token.partition("@")
        if not offset.isdigit() or (sep and not mark) or len(token) > 100:
            raise ValueError(f"not a log position: {token!r}")
        return cls(int(offset), mark or None)


@dataclass(frozen=True)
class CollectedResults:
    """What a finished job left behind, after it was copied to the result store."""

    files: list[dict]          # [{name, size, sha256}], name relative to the job's result prefix
    statistics: bytes | None   # SUMO's --statistic-output, parsed into KPIs by the caller
    log_archived: bool


LOG_NAME = "sumo.log"
#: How :meth:`Executor.observe`'s reason begins for a job the executor has lost all trace of.
LOST = "the executor has no trace of this job any more"
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

    def read_live_log_from(self, spec: JobSpec, position: LogPosition, limit: int) -> tuple[bytes, LogPosition] | None:
        """Up to ``limit`` bytes of the running job's log after ``position``, and the position after them;
        None when there is no live log.  In O(limit) memory, without reading again what came before
        ``position`` where the executor can (a file can; see each executor).

        Raises :class:`ExecutorUnavailable` when the log cannot be read now."""
        data = self.read_live_log(spec, position.offset, limit)
        return None if data is None else (data, LogPosition(position.offset + len(data)))

    def tail_live_log(self, spec: JobSpec, lines: int, max_bytes: int) -> bytes | None:
        """The last ``lines`` lines (ended by LF or CR) of the running job's log, at most ``max_bytes`` of
        them, read from its end; None when there is no live log.

        Raises :class:`ExecutorUnavailable` when the log cannot be read now."""
        raise NotImplementedError

    @abc.abstractmethod
    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        """Copy the finished job's outputs and log into ``store``; safe to repeat.

        Raises :class:`StillRunning` while the run has not stopped (a job can be
        CANCELLED in the database before its process is gone); the caller retries.
        Raises :class:`CannotCollectYet` when collecting cannot run now.
        """

    def observe(self, spec: JobSpec) -> StatusEvent | None:
        """What the executor sees of the job now, as a status event, or None when it cannot tell.

        The sweeper asks this of jobs whose status has not moved for a while: an event lost on its way
        (dead-lettered while PostgreSQL was away) is then applied from what the executor still knows.  A
        job the executor has no trace of any more is FAILED with a reason starting with :data:`LOST`.

        Raises :class:`ExecutorUnavailable` when the executor cannot be asked now."""
        return None

    @abc.abstractmethod
    def release(self, spec: JobSpec) -> None:
        """Drop what the executor keeps for a job whose results are safely stored."""

    @abc.abstractmethod
    def capacity(self) -> dict:
        """What the executor can run on: the machine (local) or the nodes (kubernetes).

        Raises :class:`ExecutorUnavailable` when that cannot be read now."""

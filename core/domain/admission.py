"""Admission control: which queued jobs of a tenant may start now.

A pure decision over the tenant's limits, what its admitted-but-unfinished
jobs already use, and its queue in submission order.  Strict FIFO: when the
oldest queued job does not fit, younger ones wait too, so a large job is not
starved by a stream of small ones.  Fairness across tenants comes from each
tenant having its own quota and its own admission pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Limits:
    max_cpu: int
    max_memory_gi: int
    max_concurrent_jobs: int


@dataclass(frozen=True)
class Usage:
    cpu: int = 0
    memory_gi: int = 0
    jobs: int = 0

    def plus(self, cpu: int, memory_gi: int) -> "Usage":
        return Usage(self.cpu + cpu, self.memory_gi + memory_gi, self.jobs + 1)

    def fits(self, limits: Limits) -> bool:
        return (
            self.cpu <= limits.max_cpu
            and self.memory_gi <= limits.max_memory_gi
            and self.jobs <= limits.max_concurrent_jobs
        )


@dataclass(frozen=True)
class Candidate:
    job_id: str
    cpu: int
    memory_gi: int


def select_admissible(limits: Limits, usage: Usage, queue: Sequence[Candidate]) -> list[str]:
    """The ids of the jobs at the head of ``queue`` that fit, oldest first."""
    admitted: list[str] = []
    for job in queue:
        after = usage.plus(job.cpu, job.memory_gi)
        if not after.fits(limits):
            break
        admitted.append(job.job_id)
        usage = after
    return admitted


def request_violation(limits: Limits, cpu: int, memory_gi: int) -> str | None:
    """Why a single job can never be admitted under ``limits``, or None."""
    if cpu > limits.max_cpu:
        return f"cpu_request {cpu} exceeds the tenant's max_cpu limit of {limits.max_cpu}"
    if memory_gi > limits.max_memory_gi:
        return f"memory_gi {memory_gi} exceeds the tenant's max_memory_gi limit of {limits.max_memory_gi}"
    return None


def queue_violation(queued: int, max_queued: int) -> str | None:
    """Why one more QUEUED job does not fit, or None."""
    if queued < max_queued:
        return None
    return (f"the tenant has {queued} QUEUED jobs, the most MAX_QUEUED_JOBS_PER_TENANT ({max_queued}) allows; "
            "submit again once some have started, or cancel some")


def storage_violation(stored_bytes: int, adding: int, max_stored_bytes: int) -> str | None:
    """Why storing ``adding`` more bytes passes the tenant's max_stored_gb limit, or None."""
    if stored_bytes + adding <= max_stored_bytes:
        return None
    return (f"storing this upload ({adding} bytes) would pass the tenant's max_stored_gb limit of "
            f"{gigabytes(max_stored_bytes)} GB ({max_stored_bytes} bytes): {stored_bytes} bytes of inputs, results and "
            "logs are stored; delete finished jobs' data (DELETE /jobs/{id}/data) or ask for a higher limit")


GB = 10**9


def gigabytes(n_bytes: int) -> float:
    """Bytes as GB (10^9), as the limit is set; rounded to what a person reads."""
    return float(f"{n_bytes / GB:.6g}")


def stored_bytes_limit(gb: float) -> int:
    """The byte count a max_stored_gb value stands for."""
    return max(1, round(gb * GB))

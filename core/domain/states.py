"""Job states and the one state machine every status change goes through.

States are ranked; a job only ever moves to a higher rank, so a duplicate or
stale event (a late ``RUNNING`` after ``SUCCEEDED``, a redelivered message)
is recognised and ignored instead of moving a job backwards.  The only
same-rank change allowed is a new ``pending_reason`` while PENDING, so the
user sees why Kubernetes (or the local slot pool) is still holding the job.

When the executor reports how a run ended, the job becomes COLLECTING, with
that ``outcome`` recorded, and only reaches it (SUCCEEDED, FAILED) once its
outputs and log are in the result store: a client that sees SUCCEEDED can
download the results at once.  A COLLECTING job no longer counts against the
quota.  A cancel by the tenant ends a job at once (CANCELLED); its log follows.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime


class JobStatus(str, enum.Enum):
    QUEUED = "QUEUED"          # stored, waiting for admission against the tenant's quota
    ADMITTED = "ADMITTED"      # counted against the quota, handed to the executor
    PENDING = "PENDING"        # the executor has it but it is not running yet (pending_reason says why)
    RUNNING = "RUNNING"
    COLLECTING = "COLLECTING"  # the run ended (``outcome`` says how); its outputs and log are being stored
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def run_over(self) -> bool:
        """The run has ended (its results may still be on their way): COLLECTING or terminal."""
        return self is JobStatus.COLLECTING or self in TERMINAL


_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.ADMITTED: 1,
    JobStatus.PENDING: 2,
    JobStatus.RUNNING: 3,
    JobStatus.COLLECTING: 4,
    JobStatus.SUCCEEDED: 5,
    JobStatus.FAILED: 5,
    JobStatus.CANCELLED: 5,
}

TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
#: States whose resources count against the tenant's quota.
ACTIVE = frozenset({JobStatus.ADMITTED, JobStatus.PENDING, JobStatus.RUNNING})
#: States an executor may report.
EXECUTOR_STATES = frozenset({JobStatus.PENDING, JobStatus.RUNNING} | TERMINAL)


class IllegalTransition(ValueError):
    """A command asked for a move the state machine does not allow."""


@dataclass(frozen=True)
class StatusEvent:
    """What an executor observed about a job, published onto the status queue."""

    job_id: str
    status: JobStatus
    at: datetime
    reason: str | None = None       # pending reason, or why it failed
    exit_code: int | None = None
    log_tail: str | None = None     # last lines of the log on failure

    def to_message(self) -> dict:
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "exit_code": self.exit_code,
            "log_tail": self.log_tail,
        }

    @classmethod
    def from_message(cls, data: dict) -> "StatusEvent":
        return cls(
            job_id=data["job_id"],
            status=JobStatus(data["status"]),
            at=datetime.fromisoformat(data["at"]),
            reason=data.get("reason"),
            exit_code=data.get("exit_code"),
            log_tail=data.get("log_tail"),
        )


@dataclass(frozen=True)
class JobState:
    """The part of a job row the state machine reads and writes."""

    status: JobStatus
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    pending_reason: str | None = None
    outcome: JobStatus | None = None  # while COLLECTING: the terminal state it reaches once collected
    status_since: datetime | None = None  # when the job entered its status (a new pending_reason keeps it)
    changes: dict = field(default_factory=dict, compare=False)


def apply_event(state: JobState, event: StatusEvent) -> JobState | None:
    """Return the job's new state after ``event``, or None to ignore it.

    Executor events never apply to a QUEUED job: the executor only learns of
    a job after admission committed, so such an event is a stray redelivery.
    A run's end (SUCCEEDED, FAILED, CANCELLED) makes the job COLLECTING with
    that outcome; :func:`collected` then completes it.
    """
    if event.status not in EXECUTOR_STATES:
        raise IllegalTransition(f"executors cannot report {event.status.value}")
    current = state.status
    if current.run_over or current is JobStatus.QUEUED:
        return None
    if event.status.rank < current.rank:
        return None
    if event.status is current:
        if current is JobStatus.PENDING and event.reason and event.reason != state.pending_reason:
            return replace(state, pending_reason=event.reason, changes={"pending_reason": event.reason})
        return None

    changes: dict = {"status": event.status}
    if event.status is JobStatus.PENDING:
        changes["pending_reason"] = event.reason
    elif event.status is JobStatus.RUNNING:
        changes["pending_reason"] = None
        changes["started_at"] = state.started_at or event.at
    else:
        changes["status"] = JobStatus.COLLECTING
        changes["outcome"] = event.status
        changes["pending_reason"] = None
        changes["finished_at"] = event.at
        changes["exit_code"] = event.exit_code
        if event.status is JobStatus.SUCCEEDED:
            changes["started_at"] = state.started_at or event.at
        else:
            changes["error"] = _error_text(event)
    return replace(state, **changes, changes=changes)


def collected(state: JobState) -> JobState | None:
    """COLLECTING → its outcome, once the results are stored; None for a job that was not collecting
    (a cancelled job's log arrives after its CANCELLED)."""
    if state.status is not JobStatus.COLLECTING:
        return None
    outcome = state.outcome or JobStatus.FAILED
    changes = {"status": outcome}
    return replace(state, status=outcome, changes=changes)


def _error_text(event: StatusEvent) -> str | None:
    parts = [p for p in (event.reason, event.log_tail) if p]
    return "\n".join(parts) if parts else None


def admit(state: JobState, at: datetime) -> JobState:
    """QUEUED → ADMITTED, decided by admission control."""
    if state.status is not JobStatus.QUEUED:
        raise IllegalTransition(f"cannot admit a job that is {state.status.value}")
    changes = {"status": JobStatus.ADMITTED, "admitted_at": at}
    return replace(state, **changes, changes=changes)


def cancel(state: JobState, at: datetime) -> JobState | None:
    """Any state before the run's end → CANCELLED; None once the run is over (COLLECTING or finished)."""
    if state.status.run_over:
        return None
    changes = {"status": JobStatus.CANCELLED, "finished_at": at, "pending_reason": None, "error": "cancelled by the tenant"}
    return replace(state, **changes, changes=changes)


def expire_pending(state: JobState, now: datetime, timeout_seconds: float) -> JobState | None:
    """PENDING for longer than ``timeout_seconds`` (since it became PENDING, whatever its reasons since) →
    FAILED with the reason it waited for; None while within the timeout, or for a job in another state.

    The caller decides which executors' waits time out at all (a wait for a free local slot resolves by
    itself).  FAILED at once, not COLLECTING: nothing ran, so there is nothing to collect.
    """
    if state.status is not JobStatus.PENDING or state.status_since is None:
        return None
    if (now - state.status_since).total_seconds() <= timeout_seconds:
        return None
    why = state.pending_reason or "no reason given by the executor"
    changes = {
        "status": JobStatus.FAILED,
        "finished_at": now,
        "pending_reason": None,
        "error": f"PENDING for more than PENDING_TIMEOUT_SECONDS ({timeout_seconds:g} s), waiting for: {why}",
    }
    return replace(state, **changes, changes=changes)


def expire_collecting(state: JobState, now: datetime, timeout_seconds: float, why: str | None) -> JobState | None:
    """The end of a collection that did not succeed within ``timeout_seconds`` of the job's last status change:
    COLLECTING → FAILED, saying how the run ended and ``why`` its results could not be stored; a finished job
    still waiting for its log (a cancelled one) keeps its status and its error says the log is lost.  None
    while within the timeout, or for a job that is not waiting for a collection."""
    if not state.status.run_over or state.status_since is None:
        return None
    if (now - state.status_since).total_seconds() <= timeout_seconds:
        return None
    within = f"within COLLECT_TIMEOUT_SECONDS ({timeout_seconds:g} s): {why or 'no collection succeeded'}"
    if state.status is JobStatus.COLLECTING:
        ran = (state.outcome or JobStatus.FAILED).value
        note, changes = f"the run ended {ran}, but its results could not be stored {within}", {"status": JobStatus.FAILED}
    else:
        note, changes = f"its log could not be stored {within}", {}
    changes["error"] = "\n".join(p for p in (state.error, note) if p)
    return replace(state, **changes, changes=changes)

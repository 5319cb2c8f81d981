"""core.domain.states: the job state machine (apply_event, admit, cancel, fail)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.domain.states import (
    ACTIVE,
    EXECUTOR_STATES,
    TERMINAL,
    IllegalTransition,
    JobState,
    JobStatus,
    StatusEvent,
    admit,
    apply_event,
    cancel,
    collected,
    expire_collecting,
    expire_pending,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=10)
T2 = T0 + timedelta(seconds=20)

S = JobStatus
ALL = list(JobStatus)
NON_TERMINAL = [s for s in ALL if not s.is_terminal]
BEFORE_RUN_END = [s for s in ALL if not s.run_over]
TERMINALS = [S.SUCCEEDED, S.FAILED, S.CANCELLED]


def ev(status: JobStatus, at: datetime = T1, **kw) -> StatusEvent:
    return StatusEvent(job_id="j1", status=status, at=at, **kw)


def state(status: JobStatus, **kw) -> JobState:
    return JobState(status=status, **kw)


# ----------------------------------------------------------------- enum basics


def test_ranks_are_ordered():
    assert S.QUEUED.rank < S.ADMITTED.rank < S.PENDING.rank < S.RUNNING.rank
    assert S.RUNNING.rank < S.COLLECTING.rank < S.SUCCEEDED.rank == S.FAILED.rank == S.CANCELLED.rank


def test_terminal_and_active_sets():
    assert TERMINAL == {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert ACTIVE == {S.ADMITTED, S.PENDING, S.RUNNING}
    assert EXECUTOR_STATES == {S.PENDING, S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED}
    for s in ALL:
        assert s.is_terminal == (s in TERMINAL)
        assert s.run_over == (s in TERMINAL or s is S.COLLECTING)


def test_status_event_round_trips_through_message():
    e = ev(S.FAILED, reason="boom", exit_code=3, log_tail="last line")
    msg = e.to_message()
    assert msg == {"job_id": "j1", "status": "FAILED", "at": T1.isoformat(), "reason": "boom",
                   "exit_code": 3, "log_tail": "last line"}
    assert StatusEvent.from_message(msg) == e


def test_status_event_from_minimal_message():
    e = StatusEvent.from_message({"job_id": "x", "status": "RUNNING", "at": T0.isoformat()})
    assert e == StatusEvent("x", S.RUNNING, T0)


def test_status_event_from_message_rejects_unknown_status():
    with pytest.raises(ValueError):
        StatusEvent.from_message({"job_id": "x", "status": "EXPLODED", "at": T0.isoformat()})


# ----------------------------------------------------------------- apply_event: illegal reports


@pytest.mark.parametrize("reported", [S.QUEUED, S.ADMITTED])
@pytest.mark.parametrize("current", ALL)
def test_executor_cannot_report_queued_or_admitted(current, reported):
    with pytest.raises(IllegalTransition, match=reported.value):
        apply_event(state(current), ev(reported))


# ----------------------------------------------------------------- apply_event: ignored events


@pytest.mark.parametrize("reported", sorted(EXECUTOR_STATES, key=lambda s: s.value))
def test_events_for_a_queued_job_are_ignored(reported):
    assert apply_event(state(S.QUEUED), ev(reported, reason="r", exit_code=0)) is None


@pytest.mark.parametrize("reported", sorted(EXECUTOR_STATES, key=lambda s: s.value))
@pytest.mark.parametrize("current", TERMINALS)
def test_events_after_a_terminal_state_are_ignored(current, reported):
    # includes duplicates (SUCCEEDED twice) and stale ones (RUNNING after SUCCEEDED)
    assert apply_event(state(current, finished_at=T0), ev(reported, reason="late", exit_code=9)) is None


@pytest.mark.parametrize(
    "current,reported",
    [
        (S.RUNNING, S.PENDING),   # stale: pending reported after running
        (S.RUNNING, S.RUNNING),   # duplicate
    ],
)
def test_stale_or_duplicate_events_are_ignored(current, reported):
    assert apply_event(state(current, started_at=T0), ev(reported, reason="Unschedulable")) is None


def test_duplicate_pending_with_same_reason_is_ignored():
    assert apply_event(state(S.PENDING, pending_reason="waiting"), ev(S.PENDING, reason="waiting")) is None


def test_duplicate_pending_without_reason_is_ignored():
    assert apply_event(state(S.PENDING, pending_reason="waiting"), ev(S.PENDING)) is None


def test_pending_with_empty_reason_is_ignored():
    assert apply_event(state(S.PENDING, pending_reason="waiting"), ev(S.PENDING, reason="")) is None


# ----------------------------------------------------------------- apply_event: PENDING reason updates


def test_pending_reason_update_while_pending():
    new = apply_event(state(S.PENDING, pending_reason="no slot"), ev(S.PENDING, reason="image pull"))
    assert new is not None
    assert new.status is S.PENDING
    assert new.pending_reason == "image pull"
    assert new.changes == {"pending_reason": "image pull"}


def test_pending_reason_set_from_none():
    new = apply_event(state(S.PENDING), ev(S.PENDING, reason="Unschedulable"))
    assert new.pending_reason == "Unschedulable"
    assert new.changes == {"pending_reason": "Unschedulable"}


# ----------------------------------------------------------------- apply_event: forward moves


def test_admitted_to_pending_records_reason():
    new = apply_event(state(S.ADMITTED, admitted_at=T0), ev(S.PENDING, reason="no free slot"))
    assert new.status is S.PENDING
    assert new.pending_reason == "no free slot"
    assert new.admitted_at == T0
    assert new.changes == {"status": S.PENDING, "pending_reason": "no free slot"}


def test_admitted_to_pending_without_reason():
    new = apply_event(state(S.ADMITTED), ev(S.PENDING))
    assert new.status is S.PENDING and new.pending_reason is None


@pytest.mark.parametrize("current", [S.ADMITTED, S.PENDING])
def test_to_running_sets_started_at_and_clears_reason(current):
    new = apply_event(state(current, pending_reason="waiting"), ev(S.RUNNING, at=T1))
    assert new.status is S.RUNNING
    assert new.started_at == T1
    assert new.pending_reason is None
    assert new.finished_at is None
    assert new.changes == {"status": S.RUNNING, "pending_reason": None, "started_at": T1}


def test_to_running_keeps_an_earlier_started_at():
    new = apply_event(state(S.PENDING, started_at=T0), ev(S.RUNNING, at=T2))
    assert new.started_at == T0


@pytest.mark.parametrize("current", [S.ADMITTED, S.PENDING, S.RUNNING])
def test_to_succeeded(current):
    started = T0 if current is S.RUNNING else None
    new = apply_event(state(current, started_at=started, pending_reason="x"), ev(S.SUCCEEDED, at=T2, exit_code=0))
    assert (new.status, new.outcome) == (S.COLLECTING, S.SUCCEEDED)  # SUCCEEDED only once the results are stored
    assert new.finished_at == T2
    assert new.exit_code == 0
    assert new.pending_reason is None
    assert new.error is None
    # a job seen finished without a RUNNING event still gets a start time
    assert new.started_at == (started or T2)
    assert new.changes["status"] is S.COLLECTING and new.changes["outcome"] is S.SUCCEEDED
    assert new.changes["finished_at"] == T2
    assert new.changes["started_at"] == (started or T2)
    assert "error" not in new.changes


@pytest.mark.parametrize("current", [S.ADMITTED, S.PENDING, S.RUNNING])
def test_to_failed_records_error_and_exit_code(current):
    new = apply_event(state(current, started_at=T0), ev(S.FAILED, at=T2, exit_code=1, reason="sumo crashed", log_tail="Error: x"))
    assert (new.status, new.outcome) == (S.COLLECTING, S.FAILED)
    assert new.finished_at == T2
    assert new.exit_code == 1
    assert new.error == "sumo crashed\nError: x"
    assert new.pending_reason is None
    assert new.started_at == T0
    assert new.changes == {"status": S.COLLECTING, "outcome": S.FAILED, "pending_reason": None, "finished_at": T2,
                           "exit_code": 1, "error": "sumo crashed\nError: x"}


def test_failed_error_from_reason_or_tail_alone():
    assert apply_event(state(S.RUNNING), ev(S.FAILED, reason="only reason")).error == "only reason"
    assert apply_event(state(S.RUNNING), ev(S.FAILED, log_tail="only tail")).error == "only tail"
    assert apply_event(state(S.RUNNING), ev(S.FAILED)).error is None


def test_failed_does_not_invent_a_start_time():
    new = apply_event(state(S.PENDING), ev(S.FAILED, at=T2, reason="image pull failed"))
    assert new.started_at is None
    assert "started_at" not in new.changes


@pytest.mark.parametrize("current", [S.ADMITTED, S.PENDING, S.RUNNING])
def test_executor_reported_cancelled(current):
    new = apply_event(state(current), ev(S.CANCELLED, at=T2, reason="stopped"))
    assert (new.status, new.outcome) == (S.COLLECTING, S.CANCELLED)
    assert new.finished_at == T2
    assert new.error == "stopped"


def test_apply_event_does_not_mutate_input():
    before = state(S.RUNNING, started_at=T0)
    apply_event(before, ev(S.SUCCEEDED, at=T2, exit_code=0))
    assert before.status is S.RUNNING and before.finished_at is None


def test_full_happy_path_sequence():
    s = admit(state(S.QUEUED), T0)
    for e in (ev(S.PENDING, reason="wait", at=T0), ev(S.RUNNING, at=T1), ev(S.SUCCEEDED, at=T2, exit_code=0)):
        nxt = apply_event(s, e)
        assert nxt is not None
        s = nxt
    assert (s.status, s.admitted_at, s.started_at, s.finished_at, s.exit_code) == (S.COLLECTING, T0, T1, T2, 0)
    # redeliveries of every event are now ignored, while collecting and after
    for e in (ev(S.PENDING), ev(S.RUNNING), ev(S.SUCCEEDED), ev(S.FAILED)):
        assert apply_event(s, e) is None
    s = collected(s)
    assert (s.status, s.changes) == (S.SUCCEEDED, {"status": S.SUCCEEDED})
    for e in (ev(S.PENDING), ev(S.RUNNING), ev(S.SUCCEEDED), ev(S.FAILED)):
        assert apply_event(s, e) is None


@pytest.mark.parametrize("outcome", TERMINALS)
def test_collecting_ends_in_its_outcome(outcome):
    assert collected(state(S.COLLECTING, outcome=outcome)).status is outcome


@pytest.mark.parametrize("current", [s for s in ALL if s is not S.COLLECTING])
def test_only_a_collecting_job_is_completed_by_its_collection(current):
    """A cancelled job's log is collected after its CANCELLED: its status stays."""
    assert collected(state(current)) is None


def test_a_collecting_job_is_not_active_and_cannot_be_cancelled():
    assert S.COLLECTING not in ACTIVE and not S.COLLECTING.is_terminal
    assert cancel(state(S.COLLECTING, outcome=S.SUCCEEDED), T2) is None


# ----------------------------------------------------------------- admit


def test_admit_queued():
    new = admit(state(S.QUEUED), T1)
    assert new.status is S.ADMITTED
    assert new.admitted_at == T1
    assert new.changes == {"status": S.ADMITTED, "admitted_at": T1}


@pytest.mark.parametrize("current", [s for s in ALL if s is not S.QUEUED])
def test_admit_anything_else_is_illegal(current):
    with pytest.raises(IllegalTransition, match=current.value):
        admit(state(current), T1)


# ----------------------------------------------------------------- cancel / fail


@pytest.mark.parametrize("current", BEFORE_RUN_END)
def test_cancel_unfinished(current):
    new = cancel(state(current, pending_reason="waiting"), T2)
    assert new.status is S.CANCELLED
    assert new.finished_at == T2
    assert new.pending_reason is None
    assert new.error == "cancelled by the tenant"
    assert new.changes == {"status": S.CANCELLED, "finished_at": T2, "pending_reason": None,
                           "error": "cancelled by the tenant"}


@pytest.mark.parametrize("current", TERMINALS)
def test_cancel_finished_is_noop(current):
    assert cancel(state(current, finished_at=T0), T2) is None


def test_changes_are_not_part_of_equality():
    assert JobState(S.RUNNING, changes={"a": 1}) == JobState(S.RUNNING)


# ----------------------------------------------------------------- timeouts


def test_pending_past_its_timeout_fails_with_what_it_waited_for():
    pending = state(S.PENDING, status_since=T0, pending_reason="ImagePullBackOff: Back-off pulling image x")
    assert expire_pending(pending, T0 + timedelta(seconds=900), 900) is None, "at the timeout it still waits"
    new = expire_pending(pending, T0 + timedelta(seconds=901), 900)
    assert new.status is S.FAILED and new.finished_at == T0 + timedelta(seconds=901) and new.pending_reason is None
    assert new.error == ("PENDING for more than PENDING_TIMEOUT_SECONDS (900 s), waiting for: "
                         "ImagePullBackOff: Back-off pulling image x")
    assert set(new.changes) == {"status", "finished_at", "pending_reason", "error"}


def test_pending_timeout_counts_from_when_it_became_pending_not_from_its_latest_reason():
    pending = state(S.PENDING, status_since=T0, pending_reason="PodInitializing: unpacking the scenario")
    newer = apply_event(pending, ev(S.PENDING, at=T0 + timedelta(seconds=899), reason="Unschedulable: 0/1 nodes"))
    assert newer.status_since == T0 and "status_since" not in newer.changes
    assert "Unschedulable" in expire_pending(newer, T0 + timedelta(seconds=901), 900).error


def test_pending_without_a_reason_says_so():
    assert "no reason given" in expire_pending(state(S.PENDING, status_since=T0), T2, 1).error


@pytest.mark.parametrize("current", [s for s in ALL if s is not S.PENDING])
def test_only_pending_jobs_time_out_pending(current):
    assert expire_pending(state(current, status_since=T0), T0 + timedelta(days=1), 1) is None


def test_pending_with_unknown_start_never_times_out():
    assert expire_pending(state(S.PENDING), T2, 1) is None


def test_collecting_past_its_timeout_fails_naming_the_run_and_why():
    collecting = state(S.COLLECTING, status_since=T0, outcome=S.SUCCEEDED)
    assert expire_collecting(collecting, T0 + timedelta(seconds=60), 60, "boom") is None
    new = expire_collecting(collecting, T0 + timedelta(seconds=61), 60, "StoreUnavailable: the object store is away")
    assert new.status is S.FAILED
    assert new.error == ("the run ended SUCCEEDED, but its results could not be stored within COLLECT_TIMEOUT_SECONDS "
                         "(60 s): StoreUnavailable: the object store is away")


def test_a_failed_run_keeps_its_error_and_adds_the_collection_s():
    collecting = state(S.COLLECTING, status_since=T0, outcome=S.FAILED, error="sumo exited with code 1")
    new = expire_collecting(collecting, T2, 1, None)
    assert new.error.startswith("sumo exited with code 1\nthe run ended FAILED")
    assert new.error.endswith("no collection succeeded")


def test_a_cancelled_job_whose_log_never_came_keeps_its_status():
    cancelled = state(S.CANCELLED, status_since=T0, error="cancelled by the tenant")
    new = expire_collecting(cancelled, T2, 1, "CannotCollectYet: no room")
    assert new.status is S.CANCELLED and new.changes == {
        "error": "cancelled by the tenant\nits log could not be stored within COLLECT_TIMEOUT_SECONDS (1 s): "
                 "CannotCollectYet: no room"}


@pytest.mark.parametrize("current", BEFORE_RUN_END)
def test_a_job_still_running_has_no_collection_to_time_out(current):
    assert expire_collecting(state(current, status_since=T0), T0 + timedelta(days=1), 1, None) is None

"""core.domain.admission: strict-FIFO admission and single-request limit checks."""

from __future__ import annotations

import pytest

from core.domain.admission import (
    Candidate,
    Limits,
    Usage,
    gigabytes,
    queue_violation,
    request_violation,
    select_admissible,
    storage_violation,
    stored_bytes_limit,
)

LIMITS = Limits(max_cpu=8, max_memory_gi=16, max_concurrent_jobs=4)


def c(job_id: str, cpu: int = 1, mem: int = 1) -> Candidate:
    return Candidate(job_id, cpu, mem)


# ----------------------------------------------------------------- Usage


def test_usage_plus_adds_one_job():
    assert Usage(2, 3, 1).plus(4, 5) == Usage(6, 8, 2)
    assert Usage().plus(1, 1) == Usage(1, 1, 1)


def test_usage_fits_at_the_limit_inclusive():
    assert Usage(8, 16, 4).fits(LIMITS)
    assert not Usage(9, 16, 4).fits(LIMITS)
    assert not Usage(8, 17, 4).fits(LIMITS)
    assert not Usage(8, 16, 5).fits(LIMITS)


# ----------------------------------------------------------------- select_admissible


def test_empty_queue_admits_nothing():
    assert select_admissible(LIMITS, Usage(), []) == []


def test_everything_fits_in_submission_order():
    queue = [c("a"), c("b"), c("c")]
    assert select_admissible(LIMITS, Usage(), queue) == ["a", "b", "c"]


def test_exact_fit_is_admitted():
    assert select_admissible(LIMITS, Usage(), [c("a", 8, 16)]) == ["a"]


def test_count_limit_binds():
    queue = [c(str(i)) for i in range(6)]
    assert select_admissible(LIMITS, Usage(), queue) == ["0", "1", "2", "3"]


def test_count_limit_counts_running_jobs():
    queue = [c("a"), c("b"), c("c")]
    assert select_admissible(LIMITS, Usage(cpu=3, memory_gi=3, jobs=3), queue) == ["a"]
    assert select_admissible(LIMITS, Usage(cpu=4, memory_gi=4, jobs=4), queue) == []


def test_cpu_limit_binds():
    queue = [c("a", cpu=3), c("b", cpu=3), c("c", cpu=3)]
    assert select_admissible(LIMITS, Usage(), queue) == ["a", "b"]


def test_cpu_limit_counts_current_usage():
    assert select_admissible(LIMITS, Usage(cpu=7, memory_gi=1, jobs=1), [c("a", cpu=2)]) == []
    assert select_admissible(LIMITS, Usage(cpu=6, memory_gi=1, jobs=1), [c("a", cpu=2)]) == ["a"]


def test_memory_limit_binds():
    queue = [c("a", mem=6), c("b", mem=6), c("c", mem=6)]
    assert select_admissible(LIMITS, Usage(), queue) == ["a", "b"]


def test_memory_limit_counts_current_usage():
    assert select_admissible(LIMITS, Usage(cpu=1, memory_gi=15, jobs=1), [c("a", mem=2)]) == []
    assert select_admissible(LIMITS, Usage(cpu=1, memory_gi=14, jobs=1), [c("a", mem=2)]) == ["a"]


def test_strict_fifo_stops_at_first_job_that_does_not_fit():
    # "big" does not fit now; the small ones behind it must wait (no overtaking)
    queue = [c("small1", cpu=2), c("big", cpu=7), c("small2", cpu=1), c("small3", cpu=1)]
    assert select_admissible(LIMITS, Usage(), queue) == ["small1"]


def test_strict_fifo_head_blocked_admits_nothing():
    queue = [c("big", mem=10), c("small", mem=1)]
    assert select_admissible(LIMITS, Usage(cpu=0, memory_gi=8, jobs=1), queue) == []


def test_a_never_fitting_head_blocks_the_queue():
    queue = [c("huge", cpu=100), c("tiny")]
    assert select_admissible(LIMITS, Usage(), queue) == []


def test_usage_over_limits_admits_nothing():
    # limits lowered below what is already running
    assert select_admissible(Limits(1, 1, 1), Usage(4, 4, 2), [c("a")]) == []


def test_select_does_not_reorder_or_deduplicate():
    queue = [c("z"), c("a"), c("m")]
    assert select_admissible(LIMITS, Usage(), queue) == ["z", "a", "m"]


# ----------------------------------------------------------------- request_violation


def test_request_within_limits_is_fine():
    assert request_violation(LIMITS, 8, 16) is None
    assert request_violation(LIMITS, 1, 1) is None


def test_request_over_cpu_names_max_cpu():
    msg = request_violation(LIMITS, 9, 1)
    assert msg is not None
    assert "max_cpu" in msg and "9" in msg and "8" in msg


def test_request_over_memory_names_max_memory_gi():
    msg = request_violation(LIMITS, 1, 17)
    assert msg is not None
    assert "max_memory_gi" in msg and "17" in msg and "16" in msg


def test_request_over_both_names_cpu_first():
    assert "max_cpu" in request_violation(LIMITS, 9, 17)


@pytest.mark.parametrize("cpu,mem", [(9, 1), (1, 17)])
def test_violating_request_is_never_admissible(cpu, mem):
    assert request_violation(LIMITS, cpu, mem) is not None
    assert select_admissible(LIMITS, Usage(), [c("x", cpu, mem)]) == []


# ----------------------------------------------------------------- the queue and the stored bytes


def test_queue_has_room_below_its_limit_only():
    assert queue_violation(0, 500) is None
    assert queue_violation(499, 500) is None
    refusal = queue_violation(500, 500)
    assert "500 QUEUED" in refusal and "MAX_QUEUED_JOBS_PER_TENANT (500)" in refusal


def test_stored_bytes_up_to_the_limit_inclusive():
    assert storage_violation(0, 100, 100) is None
    assert storage_violation(60, 40, 100) is None
    refusal = storage_violation(61, 40, 100)
    assert "max_stored_gb" in refusal and "(100 bytes)" in refusal and "61 bytes" in refusal and "(40 bytes)" in refusal
    assert "DELETE /jobs/{id}/data" in refusal


def test_gigabytes_round_trip():
    assert stored_bytes_limit(50) == 50 * 10**9
    assert gigabytes(stored_bytes_limit(0.5)) == 0.5
    assert gigabytes(12_345) == 1.2345e-05
    assert stored_bytes_limit(1e-12) == 1, "a limit is never 0 bytes"

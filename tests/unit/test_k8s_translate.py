"""Job/Pod/Event dicts → StatusEvents: the watcher's pure translation, with fake objects."""
from __future__ import annotations

from core.domain.states import JobStatus
from core.executors.kubernetes import translate as t

LABELS = {"app.kubernetes.io/managed-by": "sumo-k8", "sumo-k8/job-id": "j1", "sumo-k8/tenant": "acme",
          "app.kubernetes.io/component": "simulation"}


def pod(phase="Pending", **status):
    return {"metadata": {"name": "sumo-j1-abc", "namespace": "ns", "labels": dict(LABELS),
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, **status}}


def job(*conditions, **meta):
    return {"metadata": {"name": "sumo-j1", "namespace": "ns", "labels": dict(LABELS), **meta},
            "status": {"conditions": list(conditions)}}


def cond(type_, reason=None, message=None, status="True"):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:01:00Z"}


def terminated(code, name="sumo"):
    return [{"name": name, "state": {"terminated": {"exitCode": code, "startedAt": "2026-01-01T00:00:10Z"}}}]


def test_running_pod_reports_running_with_start_time():
    ev = t.translate_pod(pod("Running", containerStatuses=[
        {"name": "sumo", "state": {"running": {"startedAt": "2026-01-01T00:00:10Z"}}}]))
    assert ev.status is JobStatus.RUNNING and ev.job_id == "j1" and ev.at.second == 10


def test_unschedulable_pod_reports_pending_with_reason():
    ev = t.translate_pod(pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/1 nodes are available: 1 Insufficient cpu."}]))
    assert ev.status is JobStatus.PENDING
    assert ev.reason == "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."


def test_image_pull_error_reports_pending():
    ev = t.translate_pod(pod(containerStatuses=[{"name": "sumo", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]))
    assert ev.status is JobStatus.PENDING and ev.reason.startswith("ImagePullBackOff")


def test_quiet_waiting_and_unpacking():
    assert t.translate_pod(pod(containerStatuses=[{"name": "sumo", "state": {"waiting": {
        "reason": "PodInitializing"}}}])) is None
    ev = t.translate_pod(pod(initContainerStatuses=[{"name": "unpack", "state": {"running": {}}}]))
    assert ev.status is JobStatus.PENDING and "unpacking" in ev.reason


def test_finished_or_foreign_pods_say_nothing():
    assert t.translate_pod(pod("Succeeded", containerStatuses=terminated(0))) is None
    foreign = pod("Running")
    foreign["metadata"]["labels"]["app.kubernetes.io/component"] = "collector"
    assert t.translate_pod(foreign) is None


def test_complete_job_succeeds():
    ev = t.translate_job(job(cond("Complete")), [])
    assert ev.status is JobStatus.SUCCEEDED and ev.exit_code == 0 and ev.at.minute == 1


def test_failed_job_carries_exit_code_and_reason():
    ev = t.translate_job(job(cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                         [pod("Failed", containerStatuses=terminated(3))])
    assert ev.status is JobStatus.FAILED and ev.exit_code == 3
    assert ev.reason.startswith("BackoffLimitExceeded: Job has reached") and "code 3" in ev.reason


def test_failed_init_container_is_named():
    p = pod("Failed", initContainerStatuses=terminated(1, "unpack"))
    ev = t.translate_job(job(cond("Failed", "BackoffLimitExceeded")), [p])
    assert ev.exit_code == 1 and "unpacking" in ev.reason


def test_deadline_exceeded_without_pod():
    ev = t.translate_job(job(cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")), [])
    assert ev.status is JobStatus.FAILED and ev.exit_code is None and ev.reason.startswith("DeadlineExceeded")


def test_intermediate_conditions_are_ignored():
    assert t.translate_job(job(cond("FailureTarget", "DeadlineExceeded"), cond("Suspended", status="False")), []) is None
    assert t.translate_job(job(cond("Complete", status="False")), []) is None


def test_deleted_unfinished_job_is_cancelled_finished_one_keeps_outcome():
    assert t.translate_job(job(), [], deleted=True).status is JobStatus.CANCELLED
    assert t.translate_job(job(deletionTimestamp="2026-01-01T00:00:00Z"), []).status is JobStatus.CANCELLED
    assert t.translate_job(job(cond("Complete")), [], deleted=True).status is JobStatus.SUCCEEDED


def test_failed_create_event_reports_pending():
    ev = t.translate_event({"involvedObject": {"kind": "Job", "name": "sumo-j1", "namespace": "ns"},
                            "reason": "FailedCreate", "message": 'pods "x" is forbidden: exceeded quota: sumo-quota',
                            "lastTimestamp": "2026-01-01T00:00:05Z"}, {("ns", "sumo-j1"): "j1"})
    assert ev.status is JobStatus.PENDING and "exceeded quota" in ev.reason and ev.reason.startswith("FailedCreate")
    assert t.translate_event({"involvedObject": {"kind": "Job", "name": "other", "namespace": "ns"},
                              "reason": "FailedCreate"}, {("ns", "sumo-j1"): "j1"}) is None


def test_started_at_from_terminated_container():
    assert t.started_at(pod("Failed", containerStatuses=terminated(2))).second == 10
    assert t.started_at(pod()) is None


def test_run_started_at_falls_back_to_job_start_only_when_it_succeeded():
    done = job(cond("Complete"))
    done["status"]["startTime"] = "2026-01-01T00:00:07Z"
    assert t.run_started_at(done, []).second == 7
    assert t.run_started_at(done, [pod("Succeeded", containerStatuses=terminated(0))]).second == 10
    failed = job(cond("Failed", "DeadlineExceeded"))
    failed["status"]["startTime"] = "2026-01-01T00:00:07Z"
    assert t.run_started_at(failed, []) is None


def test_a_run_stopped_at_a_cap_fails_with_its_termination_message_first():
    stopped = [{"name": "sumo", "state": {"terminated": {
        "exitCode": 3, "message": "MAX_OUTPUT_MB: the run wrote more than 2048 MB into its run directory; it was stopped\n"}}}]
    ev = t.translate_job(job(cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
                         [pod("Failed", containerStatuses=stopped)])
    assert ev.status is JobStatus.FAILED and ev.exit_code == 3
    assert ev.reason == ("MAX_OUTPUT_MB: the run wrote more than 2048 MB into its run directory; it was stopped "
                         "(BackoffLimitExceeded: Job has reached the specified backoff limit (sumo exited with code 3))")
    plain = t.translate_job(job(cond("Failed", "BackoffLimitExceeded")), [pod("Failed", containerStatuses=terminated(1))])
    assert plain.reason == "BackoffLimitExceeded (sumo exited with code 1)"  # no message: as before


def test_a_container_killed_at_its_memory_limit_names_the_limit_and_memory_gi():
    killed = [{"name": "sumo", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    failed = job(cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    failed["spec"] = {"template": {"spec": {"containers": [
        {"name": "sumo", "resources": {"limits": {"memory": "2Gi", "cpu": "1"}}}]}}}
    ev = t.translate_job(failed, [pod("Failed", containerStatuses=killed)])
    assert ev.status is JobStatus.FAILED and ev.exit_code == 137
    assert ev.reason.startswith("OOMKilled: sumo used more memory than its limit of 2Gi (memory_gi=2)"), ev.reason
    assert "(sumo exited with code 137)" in ev.reason
    plain = t.translate_job(job(cond("Failed", "BackoffLimitExceeded")), [pod("Failed", containerStatuses=killed)])
    assert plain.reason.startswith("OOMKilled: sumo used more memory than its container may"), plain.reason


def test_a_failed_runs_termination_message_is_its_log_tail_not_its_reason():
    failed = [{"name": "sumo", "state": {"terminated": {"exitCode": 1, "message": "Error: unknown edge 'nope'\nQuitting."}}}]
    ev = t.translate_job(job(cond("Failed", "BackoffLimitExceeded")), [pod("Failed", containerStatuses=failed)])
    assert ev.reason == "BackoffLimitExceeded (sumo exited with code 1)"
    assert ev.log_tail == "Error: unknown edge 'nope'\nQuitting."

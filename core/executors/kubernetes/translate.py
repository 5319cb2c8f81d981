"""Kubernetes objects → :class:`StatusEvent`: pure functions over the API's JSON dicts.

The watcher feeds every Job, Pod and (FailedCreate) Event it sees through
these; they never call the API, so they are unit-tested with plain dicts
(``tests/unit/test_k8s_translate.py``).

* A Pod of a simulation reports PENDING (with the scheduler's or the
  kubelet's reason: Unschedulable, ErrImagePull, ...) or RUNNING once its
  ``sumo`` container runs.  A finished pod reports nothing: the Job decides.
* A Job reports SUCCEEDED/FAILED from its ``Complete``/``Failed`` condition
  (reason e.g. DeadlineExceeded, BackoffLimitExceeded) with the exit code of
  its newest pod's container, and that container's termination message first
  when it left one (a run stopped at MAX_OUTPUT_MB or MAX_LOG_MB says so);
  a Job deleted before finishing reports CANCELLED.
* A ``FailedCreate`` Event on a Job (pod creation refused, e.g. by the
  namespace's ResourceQuota) reports PENDING with the message.
"""
from __future__ import annotations

from datetime import datetime, timezone

from kubernetes.utils.quantity import parse_quantity

from core.domain.states import JobStatus, StatusEvent
from core.executors.kubernetes.manifests import COMPONENT, INIT_CONTAINER, JOB_LABEL, MAIN_CONTAINER, SIMULATION
from core.executors.kubernetes.pod_scripts import CAP_EXIT_CODE

#: Waiting reasons that are normal steps of a start, not something to tell the user.
QUIET_WAITING = frozenset({"ContainerCreating", "PodInitializing"})


def parse_time(value: str | None) -> datetime:
    if value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(timezone.utc)


def simulation_job_id(obj: dict) -> str | None:
    """The job id of a sumo-k8 simulation Job or Pod; None for anything else (collectors, cleanups)."""
    lab = (obj.get("metadata") or {}).get("labels") or {}
    return lab.get(JOB_LABEL) if lab.get(COMPONENT) == SIMULATION else None


def _reason(reason: str | None, message: str | None) -> str:
    return ": ".join(p for p in (reason, message) if p) or "unknown"


def _status(pod: dict, name: str, init: bool = False) -> dict | None:
    key = "initContainerStatuses" if init else "containerStatuses"
    for cs in (pod.get("status") or {}).get(key) or []:
        if cs.get("name") == name:
            return cs
    return None


def translate_pod(pod: dict) -> StatusEvent | None:
    """PENDING (with why) or RUNNING for a simulation pod; None when the pod says nothing new."""
    job_id = simulation_job_id(pod)
    if job_id is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Running":
        main = _status(pod, MAIN_CONTAINER) or {}
        running = (main.get("state") or {}).get("running")
        if running is not None:
            return StatusEvent(job_id, JobStatus.RUNNING, parse_time(running.get("startedAt")))
        return None
    if phase not in (None, "Pending"):
        return None  # Succeeded/Failed/Unknown: the Job's conditions decide
    reason = pending_reason(pod)
    init = _status(pod, INIT_CONTAINER, init=True)
    if reason is None and init and (init.get("state") or {}).get("running") is not None:
        reason = "PodInitializing: unpacking the scenario"
    return None if reason is None else StatusEvent(job_id, JobStatus.PENDING, datetime.now(timezone.utc), reason=reason)


def pending_reason(pod: dict) -> str | None:
    """Why a Pending pod does not run, as Kubernetes says it: the scheduler's (Unschedulable), the kubelet's
    (ErrImagePull, ImagePullBackOff, CreateContainerConfigError …) or the pod's; None while it merely starts."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _reason(cond.get("reason"), cond.get("message"))
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in QUIET_WAITING | {None}:
                return _reason(waiting.get("reason"), waiting.get("message"))
    if status.get("reason"):
        return _reason(status.get("reason"), status.get("message"))
    return None


def newest_pod(pods: list[dict]) -> dict | None:
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", default=None)


def _terminated(pod: dict | None) -> tuple[dict | None, str | None]:
    """The terminated state of the pod's failed init container or of its ``sumo`` container, and which."""
    if pod is None:
        return None, None
    for name, init in ((INIT_CONTAINER, True), (MAIN_CONTAINER, False)):
        cs = _status(pod, name, init) or {}
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term and (not init or term.get("exitCode")):
            return term, name
    return None, None


def exit_code(pod: dict | None) -> tuple[int | None, str | None]:
    """Exit code of the pod's failed init container or of its ``sumo`` container, and which."""
    term, name = _terminated(pod)
    return (None, None) if term is None else (term.get("exitCode"), name)


def termination_message(pod: dict | None) -> str | None:
    """What the container that ended the pod wrote to its terminationMessagePath (the run's script says there
    which cap, MAX_OUTPUT_MB or MAX_LOG_MB, stopped it); None when it wrote nothing."""
    term, _ = _terminated(pod)
    message = ((term or {}).get("message") or "").strip()
    return message or None


def _who(container: str | None) -> str:
    """A container of the simulation pod, as its job's error names it."""
    return "sumo" if container == MAIN_CONTAINER else "unpacking the input"


def _oom_killed(job: dict, pod: dict | None) -> str | None:
    """What a container ended by the OOM killer (its memory limit reached) is told: the limit, and the job's
    memory_gi it comes from; None for any other end."""
    term, name = _terminated(pod)
    if (term or {}).get("reason") != "OOMKilled":
        return None
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    limit = next((((c.get("resources") or {}).get("limits") or {}).get("memory")
                  for c in containers if c.get("name") == name), None)
    who = _who(name)
    if not limit:
        return f"OOMKilled: {who} used more memory than its container may"
    gi = parse_quantity(limit) / 2**30
    return (f"OOMKilled: {who} used more memory than its limit of {limit} "
            f"(memory_gi={int(gi) if gi == int(gi) else float(gi)}); submit it with more memory")


def started_at(pod: dict | None) -> datetime | None:
    """When the ``sumo`` container started, if it ever did."""
    cs = _status(pod, MAIN_CONTAINER) if pod else None
    state = (cs or {}).get("state") or {}
    for key in ("running", "terminated"):
        if (state.get(key) or {}).get("startedAt"):
            return parse_time(state[key]["startedAt"])
    return None


def run_started_at(job: dict, pods: list[dict]) -> datetime | None:
    """When the run started: the container's start, else (the pods being gone) the start of a
    Job that succeeded, which certainly ran; None when unknown."""
    started = started_at(newest_pod(pods))
    if started is None and any(c.get("type") == "Complete" and c.get("status") == "True"
                               for c in (job.get("status") or {}).get("conditions") or []):
        start = (job.get("status") or {}).get("startTime")
        return parse_time(start) if start else None
    return started


def translate_job(job: dict, pods: list[dict], deleted: bool = False) -> StatusEvent | None:
    """SUCCEEDED/FAILED from the Job's terminal condition, CANCELLED when deleted unfinished."""
    job_id = simulation_job_id(job)
    if job_id is None:
        return None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        at = parse_time(cond.get("lastTransitionTime"))
        if cond.get("type") == "Complete":
            return StatusEvent(job_id, JobStatus.SUCCEEDED, at, exit_code=0)
        if cond.get("type") == "Failed":
            pod = newest_pod(pods)
            code, container = exit_code(pod)
            reason = _reason(cond.get("reason"), cond.get("message"))
            if code is not None:
                reason += f" ({_who(container)} exited with code {code})"
            told, tail = termination_message(pod), None
            if told and container == MAIN_CONTAINER and code != CAP_EXIT_CODE:
                told, tail = None, told  # a failed run's message is its console's last lines
            told = told or _oom_killed(job, pod)
            if told:  # the container's own account of why it ended (or the kernel's) comes first
                reason = f"{told} ({reason})"
            return StatusEvent(job_id, JobStatus.FAILED, at, reason=reason, exit_code=code, log_tail=tail)
    if deleted or (job.get("metadata") or {}).get("deletionTimestamp"):
        return StatusEvent(job_id, JobStatus.CANCELLED, datetime.now(timezone.utc),
                           reason="the Kubernetes Job was deleted before it finished")
    return None


def translate_event(event: dict, job_ids_by_name: dict[tuple[str, str], str]) -> StatusEvent | None:
    """PENDING for a ``FailedCreate`` Event on one of our Jobs (e.g. ``exceeded quota``)."""
    inv = event.get("involvedObject") or {}
    if inv.get("kind") != "Job" or event.get("reason") != "FailedCreate":
        return None
    job_id = job_ids_by_name.get((inv.get("namespace") or "", inv.get("name") or ""))
    if job_id is None:
        return None
    at = parse_time(event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp"))
    return StatusEvent(job_id, JobStatus.PENDING, at, reason=_reason("FailedCreate", event.get("message")))

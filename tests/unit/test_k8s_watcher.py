"""The watcher's list-then-watch loop with a fake API: 410 Gone re-lists, nothing is lost or repeated."""
from __future__ import annotations

import json
import threading

from kubernetes import client

from core.domain.states import JobStatus
from core.executors.kubernetes.watcher import Watcher

LABELS = {"app.kubernetes.io/managed-by": "sumo-k8", "sumo-k8/job-id": "j1",
          "app.kubernetes.io/component": "simulation"}


def job(rv: str, *conditions) -> dict:
    return {"metadata": {"name": "sumo-j1", "namespace": "ns", "labels": LABELS, "resourceVersion": rv},
            "status": {"conditions": [{"type": c, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                      for c in conditions]}}


class FakeResp:
    def __init__(self, body: bytes, on_close=None) -> None:
        self.data, self.on_close = body, on_close

    def stream(self, amt=None, decode_content=False):
        yield self.data

    def close(self):
        if self.on_close:
            self.on_close()

    def release_conn(self):
        pass


class FakeJobs:
    """List: a running job at rv 10.  First watch: 410 Gone.  Second list: still running at rv 12;
    watch from 12: a bookmark, then the job completes (closing that response stops the loop)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.calls = stop, []

    def __call__(self, **kw):
        self.calls.append(kw.get("resource_version") if kw.get("watch") else "list")
        if not kw.get("watch"):
            rv = "10" if self.calls.count("list") == 1 else "12"
            return FakeResp(json.dumps({"metadata": {"resourceVersion": rv}, "items": [job(rv)]}).encode())
        if kw["resource_version"] == "10":
            return FakeResp(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "code": 410, "message": "too old resource version"}}).encode() + b"\n")
        assert kw["allow_watch_bookmarks"] is True
        lines = [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "13"}}},
                 {"type": "MODIFIED", "object": job("14", "Complete")}]
        return FakeResp(b"\n\n".join(json.dumps(x).encode() for x in lines) + b"\n", on_close=self.stop.set)


def test_gone_relists_and_completion_is_published_once():
    published = []
    w = Watcher(client.ApiClient(), published.append, resync_seconds=60)
    w._fetch_pods = lambda namespace, job_id: []
    stop = threading.Event()
    fake = FakeJobs(stop)
    w.streams["jobs"] = (fake, {}, w._on_job)
    w.leading.set()
    w._stream("jobs", stop)
    assert fake.calls == ["list", "10", "list", "12"]
    assert w.stats["gone"] == 1 and w.stats["lists"] == 2
    assert [(e.job_id, e.status) for e in published] == [("j1", JobStatus.SUCCEEDED)]
    w._on_job("MODIFIED", job("15", "Complete"))  # a duplicate (resync) is not published again
    assert len(published) == 1


def test_a_refused_finalizer_release_does_not_stop_the_stream():
    """A Job being deleted in a namespace where RBAC refuses the watcher its patch (another deployment's, a
    namespace without the tenant roles) is logged; the next Job's end is still published."""
    from core.executors.kubernetes.watcher import FINALIZER

    published = []
    w = Watcher(client.ApiClient(), published.append, resync_seconds=60)
    w._fetch_pods = lambda namespace, job_id: []

    def refuse(*args, **kw):
        raise client.ApiException(status=403, reason="Forbidden")

    w.batch.patch_namespaced_job = refuse
    deleting = job("20", "Complete")
    deleting["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[FINALIZER])
    w._on_job("MODIFIED", deleting)
    other = job("21", "Complete")
    other["metadata"].update(name="sumo-j2", labels={**LABELS, "sumo-k8/job-id": "j2"})
    w._on_job("MODIFIED", other)
    assert [(e.job_id, e.status) for e in published] == [("j1", JobStatus.SUCCEEDED), ("j2", JobStatus.SUCCEEDED)]

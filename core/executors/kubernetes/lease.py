"""Leader election through a coordination.k8s.io/v1 Lease, so one watcher publishes at a time.

``try_acquire`` takes the Lease when it is free, expired or already ours and
renews it otherwise; the update carries the read ``resourceVersion``, so two
candidates racing for it cannot both win (the loser gets 409).  Expiry is
judged like client-go does: by how long *this* process has seen the same
holder/renewTime unchanged, which is immune to clock skew between machines.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from kubernetes import client
from kubernetes.client.rest import ApiException


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderLease:
    def __init__(self, api: client.ApiClient, namespace: str, identity: str, *,
                 name: str = "sumo-k8-watcher", duration_seconds: int = 15) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration_seconds
        self.renew_period = max(1.0, duration_seconds / 3)
        self._observed: tuple | None = None
        self._observed_at = 0.0

    def _read(self) -> dict | None:
        try:
            resp = self.coord.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def _create(self) -> bool:
        now = _micro_now()
        body = {"metadata": {"name": self.name}, "spec": {
            "holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
            "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
        try:
            self.coord.create_namespaced_lease(self.namespace, body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            if exc.status != 404:
                raise
        # No controller namespace: a dev cluster nobody deployed k8s/ to (as deployed, the watcher may not
        # create namespaces, and needs not: namespace.yaml made it).
        try:
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self._create()

    def try_acquire(self) -> bool:
        """Acquire or renew; True while this identity holds the Lease."""
        lease = self._read()
        if lease is None:
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.get("leaseDurationSeconds") or self.duration
        expired = time.monotonic() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        now = _micro_now()
        if holder != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, renewTime=now, leaseDurationSeconds=self.duration)
        lease["spec"] = spec
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observed, self._observed_at = (self.identity, now), time.monotonic()
        return True

    def release(self) -> None:
        """Give the Lease up (when still ours) so a standby takes over at once."""
        lease = self._read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = None
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status != 409:
                raise

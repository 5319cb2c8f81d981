"""Bind every PersistentVolumeClaim to a node-local hostPath PersistentVolume.

The dev cluster runs no volume controllers, and the scheduler refuses pods
whose claims are unbound ("persistentvolumeclaim not found"/"unbound").  The
node agent therefore plays a minimal static provisioner + binder: for each
Pending claim it creates PV ``pvc-<claim uid>`` (hostPath = a directory per
claim under the agent's state dir, capacity = the claim's request) and binds
both sides the way the PV controller would (PV ``claimRef`` + phase Bound,
claim ``spec.volumeName`` + phase Bound).  PVs whose claim is gone are
deleted with their directory.
"""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from kubernetes.client.rest import ApiException

log = logging.getLogger("pvc-binder")
LABEL = "devcluster.sumo-k8/provisioned"
MERGE = "application/merge-patch+json"


def claim_dir(state_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """Host directory backing claim ``namespace/name`` (one per claim object)."""
    return state_dir / "pvc" / namespace / f"{name}-{uid[:8]}"


def bind_once(core, state_dir: Path) -> None:
    claims = core.list_persistent_volume_claim_for_all_namespaces().items
    live = {c.metadata.uid for c in claims}
    for pvc in claims:
        if pvc.spec.volume_name or pvc.metadata.deletion_timestamp:
            continue
        md = pvc.metadata
        d = claim_dir(state_dir, md.namespace, md.name, md.uid)
        d.mkdir(parents=True, exist_ok=True)
        size = ((pvc.spec.resources.requests if pvc.spec.resources else None) or {}).get("storage", "1Gi")
        modes = pvc.spec.access_modes or ["ReadWriteOnce"]
        pv_name = f"pvc-{md.uid}"
        pv = {"metadata": {"name": pv_name, "labels": {LABEL: "true"}, "annotations": {
                  "pv.kubernetes.io/provisioned-by": "devcluster-node-agent"}},
              "spec": {"capacity": {"storage": size}, "accessModes": modes,
                       "persistentVolumeReclaimPolicy": "Delete",
                       "storageClassName": pvc.spec.storage_class_name or "",
                       "volumeMode": pvc.spec.volume_mode or "Filesystem",
                       "hostPath": {"path": str(d), "type": "DirectoryOrCreate"},
                       "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                    "namespace": md.namespace, "name": md.name, "uid": md.uid}}}
        try:
            core.create_persistent_volume(pv)
        except ApiException as e:
            if e.status != 409:
                raise
        core.patch_persistent_volume_status(pv_name, {"status": {"phase": "Bound"}},
                                            _content_type=MERGE)
        core.patch_namespaced_persistent_volume_claim(md.name, md.namespace, {
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                         "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"volumeName": pv_name}}, _content_type=MERGE)
        core.patch_namespaced_persistent_volume_claim_status(md.name, md.namespace, {"status": {
            "phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}},
            _content_type=MERGE)
        log.info("bound claim %s/%s to %s (%s)", md.namespace, md.name, pv_name, d)
    for pv in core.list_persistent_volume(label_selector=LABEL).items:
        ref = pv.spec.claim_ref
        if ref and ref.uid not in live:
            core.delete_persistent_volume(pv.metadata.name)
            if pv.spec.host_path:
                shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)
            log.info("deleted %s (claim %s/%s gone)", pv.metadata.name, ref.namespace, ref.name)


def bind_loop(core, state_dir: Path, stop: threading.Event, interval: float = 1.0) -> None:
    """Poll claims every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            bind_once(core, state_dir)
        except Exception as e:  # noqa: BLE001 - retry next round
            log.warning("PVC binding round failed: %r", e)
        stop.wait(interval)

"""A tenant's objects on the cluster: its Namespace, the RoleBindings that let the controller's processes act
in it, ResourceQuota, LimitRange, NetworkPolicies (deny-all, and the collector pods' egress to the API and
DNS), ``sumo-runner`` ServiceAccount and results PVC (manifests in :mod:`.manifests`).

Each is reconciled by one server-side apply: created when missing, the service's fields set to the tenant
row's values, whatever was there.  The PVC is only created: its spec is immutable.  The RoleBindings come
right after the Namespace: the workers create everything else in it through the one bound to them (they hold
no cluster-wide right to write pods, Jobs or ConfigMaps; k8s/rbac.yaml).
"""
from __future__ import annotations

import logging

from core.executors.base import JobSpec
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.client import APPLY, FIELD_MANAGER, Kube, allowing, drain
from core.waits import wait_until

log = logging.getLogger(__name__)
QUOTA_SETTLE_TIMEOUT = 60.0


class TenantObjects:
    def __init__(self, kube: Kube, settings) -> None:
        self.kube = kube
        self.settings = settings
        #: Namespaces known to hold what a Job needs (ensured by this process); a 404 forgets one.
        self.ready_namespaces: set[str] = set()

    def ensure(self, tenant: dict) -> None:
        """Make the tenant's objects match its row: one server-side apply per object."""
        core, net, ns = self.kube.core, self.kube.net, tenant["namespace"]
        _apply(core.patch_namespace, m.namespace(tenant))
        for binding in self._role_bindings(tenant):
            _apply(self.kube.rbac.patch_namespaced_role_binding, binding, ns)
        quota = m.resource_quota(tenant, max_input_bytes=self.settings.max_file_size_mb * 1024 * 1024)
        for patch, body in (
            (core.patch_namespaced_resource_quota, quota),
            (core.patch_namespaced_limit_range, m.limit_range(tenant)),
            (net.patch_namespaced_network_policy, m.network_policy(tenant)),
            (net.patch_namespaced_network_policy, self._collector_egress(tenant)),
            (core.patch_namespaced_service_account, m.service_account(tenant)),
        ):
            _apply(patch, body, ns)
        allowing(core.create_namespaced_persistent_volume_claim, ns, self._pvc(tenant))  # spec is immutable
        self.wait_quota_settled(ns)
        self.ready_namespaces.add(ns)

    def ensure_basics(self, spec: JobSpec) -> None:
        """What a Job cannot run without, when :meth:`ensure` has not run yet (no quota: no limits known)."""
        if spec.namespace in self.ready_namespaces:
            return
        core, net = self.kube.core, self.kube.net
        tenant = {"tenant_id": spec.tenant_id, "namespace": spec.namespace}
        allowing(core.create_namespace, m.namespace(tenant))
        for binding in self._role_bindings(tenant):
            allowing(self.kube.rbac.create_namespaced_role_binding, spec.namespace, binding)
        allowing(net.create_namespaced_network_policy, spec.namespace, m.network_policy(tenant))
        allowing(net.create_namespaced_network_policy, spec.namespace, self._collector_egress(tenant))
        allowing(core.create_namespaced_service_account, spec.namespace, m.service_account(tenant))
        allowing(core.create_namespaced_persistent_volume_claim, spec.namespace, self._pvc(tenant))
        self.ready_namespaces.add(spec.namespace)

    def _collector_egress(self, tenant: dict) -> dict:
        """Collector pods reach the API's pods (in CONTROLLER_NAMESPACE, on PORT) and DNS, nothing else."""
        return m.collector_egress_policy(tenant, api_namespace=self.settings.controller_namespace,
                                         api_port=self.settings.port)

    def _role_bindings(self, tenant: dict) -> list[dict]:
        return m.tenant_role_bindings(tenant, controller_namespace=self.settings.controller_namespace)

    def _pvc(self, tenant: dict) -> dict:
        return m.results_pvc(tenant, size_gi=self.settings.result_storage_size_gi,
                             storage_class=self.settings.storage_class,
                             access_mode=getattr(self.settings, "result_storage_access_mode", "ReadWriteOnce"))

    def wait_quota_settled(self, ns: str) -> None:
        """Wait until the quota controller has applied the quota's spec to its status.

        Quota admission checks pods against ``status.hard``: before the first
        computation it refuses objects ("status unknown for quota"), and after a
        change of limits it still applies the old values.  Both sides are read
        from the server, so quantities are compared in its normalised form.
        """
        def settled():
            quota = self.kube.core.read_namespaced_resource_quota("sumo-quota", ns)
            return quota.status is not None and (quota.status.hard or {}) == (quota.spec.hard or {})

        try:
            wait_until(settled, QUOTA_SETTLE_TIMEOUT, f"ResourceQuota of {ns}", interval=0.05, backoff=1.5)
        except TimeoutError:
            log.warning("ResourceQuota in %s not computed yet; creations may be retried", ns)


def _apply(patch, body: dict, *namespace: str) -> None:
    """Server-side apply ``body`` as this service's field manager, taking over fields set by anyone else."""
    drain(patch(body["metadata"]["name"], *namespace, body, field_manager=FIELD_MANAGER, force=True,
                _content_type=APPLY, _preload_content=False))

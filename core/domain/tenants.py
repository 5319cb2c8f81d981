"""Tenant identity rules: ids, namespaces and API keys.

A tenant id becomes a Kubernetes namespace (``sumo-<id>``), so it must be a
DNS-1123 label.  Reserved names are checked on both the id and the namespace
it produces: ``k8-system`` is a harmless-looking id whose namespace,
``sumo-k8-system``, is the controller's own.  Such ids are refused rather than
silently mapped, so that what a tenant registers is what an operator sees.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

#: What a tenant id looks like; the API uses it to refuse malformed ids in paths and queries early.
TENANT_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL = re.compile(TENANT_ID_PATTERN)
NAMESPACE_PREFIX = "sumo-"
RESERVED_EXACT = {"default", "kube-system", "kube-public", "kube-node-lease", "sumo-k8", "sumo-k8-system"}
RESERVED_PREFIXES = ("kube-", "openshift-", "sumo-k8")
#: Namespaces of the system: a tenant's ``sumo-<id>`` may not be one of them (``sumo-k8s-lab`` is fine).
RESERVED_NAMESPACE_PREFIXES = ("kube-", "openshift-", "sumo-k8-")
API_KEY_PREFIX = "sk-"


class InvalidTenantId(ValueError):
    pass


def validate_tenant_id(tenant_id: str, controller_namespace: str = "sumo-k8-system") -> str:
    """Return ``tenant_id`` if usable, else raise InvalidTenantId saying why.

    ``controller_namespace`` (the setting ``CONTROLLER_NAMESPACE``) is reserved too, whatever its name.
    """
    if not 1 <= len(tenant_id) <= 63 - len(NAMESPACE_PREFIX):
        raise InvalidTenantId(f"tenant_id must be 1 to {63 - len(NAMESPACE_PREFIX)} characters long")
    if not DNS_LABEL.fullmatch(tenant_id):
        raise InvalidTenantId(
            "tenant_id must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
        )
    if tenant_id in RESERVED_EXACT or tenant_id == controller_namespace or tenant_id.startswith(RESERVED_PREFIXES):
        raise InvalidTenantId(f"tenant_id {tenant_id!r} is reserved for the system")
    namespace = namespace_for(tenant_id)
    if namespace in RESERVED_EXACT or namespace == controller_namespace \
            or namespace.startswith(RESERVED_NAMESPACE_PREFIXES):
        raise InvalidTenantId(
            f"tenant_id {tenant_id!r} is reserved for the system: its namespace {namespace!r} is one of the "
            "system's (the controller's namespace, sumo-k8-*, kube-*)"
        )
    return tenant_id


def namespace_for(tenant_id: str) -> str:
    """The Kubernetes namespace of a tenant: prefixed, so no tenant can take a system one."""
    return NAMESPACE_PREFIX + tenant_id


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """Keys are 256 random bits, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def keys_match(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(presented), stored_hash)

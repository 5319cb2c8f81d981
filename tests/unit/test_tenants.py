"""core.domain.tenants: tenant ids, namespaces and API keys."""

from __future__ import annotations

import hashlib
import re

import pytest

from core.domain.tenants import (
    API_KEY_PREFIX,
    NAMESPACE_PREFIX,
    InvalidTenantId,
    hash_api_key,
    keys_match,
    namespace_for,
    new_api_key,
    validate_tenant_id,
)

MAX_LEN = 63 - len(NAMESPACE_PREFIX)  # 58: the namespace must stay a DNS label


@pytest.mark.parametrize("tenant_id", ["a", "acme", "team-7", "0", "9lives", "a-b-c", "x" * MAX_LEN, "kubex", "defaults"])
def test_valid_ids(tenant_id):
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize(
    "tenant_id",
    ["Bad_Name", "Acme", "under_score", "-lead", "trail-", "dot.ted", "sp ace", "ünï", "a/b", "a\nb", "acme\n"],
)
def test_non_dns_labels_are_refused(tenant_id):
    with pytest.raises(InvalidTenantId, match="DNS label"):
        validate_tenant_id(tenant_id)


def test_empty_id_is_refused():
    with pytest.raises(InvalidTenantId, match="1 to 58"):
        validate_tenant_id("")


def test_too_long_id_is_refused():
    with pytest.raises(InvalidTenantId, match="1 to 58"):
        validate_tenant_id("x" * (MAX_LEN + 1))
    with pytest.raises(InvalidTenantId):
        validate_tenant_id("a" * 70)


@pytest.mark.parametrize(
    "tenant_id",
    ["default", "kube-system", "kube-public", "kube-node-lease", "kube-anything", "openshift-x", "sumo-k8", "sumo-k8-system", "sumo-k8x"],
)
def test_reserved_ids_are_refused(tenant_id):
    with pytest.raises(InvalidTenantId, match="reserved"):
        validate_tenant_id(tenant_id)


@pytest.mark.parametrize("tenant_id", ["k8-system", "k8", "k8-anything"])
def test_ids_whose_namespace_is_the_systems_are_refused(tenant_id):
    """``k8-system`` looks harmless, but its namespace ``sumo-k8-system`` is the controller's own."""
    with pytest.raises(InvalidTenantId, match=f"namespace 'sumo-{tenant_id}'"):
        validate_tenant_id(tenant_id)


def test_the_configured_controller_namespace_is_reserved():
    assert validate_tenant_id("prod") == "prod"
    with pytest.raises(InvalidTenantId, match="namespace 'sumo-prod'"):
        validate_tenant_id("prod", controller_namespace="sumo-prod")
    with pytest.raises(InvalidTenantId, match="reserved"):
        validate_tenant_id("platform", controller_namespace="platform")


def test_a_namespace_that_only_starts_like_the_systems_is_fine():
    assert validate_tenant_id("k8s-lab") == "k8s-lab"


def test_invalid_tenant_id_is_a_value_error():
    assert issubclass(InvalidTenantId, ValueError)


def test_namespace_is_prefixed():
    assert namespace_for("acme") == "sumo-acme"
    assert NAMESPACE_PREFIX == "sumo-"
    # the longest valid id still gives a valid namespace (<= 63 chars)
    assert len(namespace_for("x" * MAX_LEN)) == 63


def test_new_api_key_format():
    key = new_api_key()
    assert key.startswith("sk-") and API_KEY_PREFIX == "sk-"
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{43}", key), key  # 32 random bytes, urlsafe base64


def test_new_api_keys_are_unique():
    keys = {new_api_key() for _ in range(200)}
    assert len(keys) == 200


def test_hash_is_sha256_hex_and_deterministic():
    key = "sk-abc"
    h = hash_api_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert h == hash_api_key(key)
    assert h == hashlib.sha256(b"sk-abc").hexdigest()
    assert key not in h


def test_different_keys_hash_differently():
    assert hash_api_key(new_api_key()) != hash_api_key(new_api_key())


def test_keys_match():
    key = new_api_key()
    stored = hash_api_key(key)
    assert keys_match(key, stored)
    assert not keys_match(key + "x", stored)
    assert not keys_match(new_api_key(), stored)
    assert not keys_match(key, stored.upper())
    assert not keys_match(key, "")

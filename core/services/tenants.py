"""Tenant registration, keys and limits."""
from __future__ import annotations

from core.domain.admission import stored_bytes_limit
from core.domain.tenants import InvalidTenantId, hash_api_key, namespace_for, new_api_key, validate_tenant_id
from core.services import admission
from core.clock import utcnow
from core.services.context import Context
from core.services.errors import Conflict, Invalid, NotFound


def register(
    ctx: Context, tenant_id: str, max_cpu: int | None, max_memory_gi: int | None, max_concurrent_jobs: int | None,
    max_stored_gb: float | None = None,
) -> tuple[dict, str]:
    """Create a tenant (unset limits take the settings' defaults) and its usage counters; returns its row and
    its API key (shown once, stored hashed)."""
    try:
        validate_tenant_id(tenant_id, ctx.settings.controller_namespace)
    except InvalidTenantId as exc:
        raise Invalid(str(exc)) from None
    api_key = new_api_key()
    now = utcnow()
    with ctx.uow() as uow:
        row = uow.tenants.add(
            {
                "tenant_id": tenant_id,
                "namespace": namespace_for(tenant_id),
                "api_key_hash": hash_api_key(api_key),
                "max_cpu": max_cpu or ctx.settings.default_max_cpu,
                "max_memory_gi": max_memory_gi or ctx.settings.default_max_memory_gi,
                "max_concurrent_jobs": max_concurrent_jobs or ctx.settings.max_concurrent_jobs_per_tenant,
                "max_stored_bytes": stored_bytes_limit(max_stored_gb or ctx.settings.default_max_stored_gb),
                "created_at": now,
                "updated_at": now,
            }
        )
        if row is not None:
            uow.usage.create(tenant_id)
    if row is None:
        raise Conflict(f"tenant {tenant_id!r} already exists")
    ctx.bus.best_effort(ctx.bus.reconcile_tenant, tenant_id)  # the API never talks to the executor itself
    return row, api_key


def regenerate_key(ctx: Context, tenant_id: str) -> tuple[dict, str]:
    api_key = new_api_key()
    with ctx.uow() as uow:
        row = uow.tenants.update(tenant_id, {"api_key_hash": hash_api_key(api_key)}, utcnow())
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    ctx.recent_keys.forget_tenant(tenant_id)  # other API workers: the job insert re-checks the key
    return row, api_key


def update_limits(ctx: Context, tenant_id: str, changes: dict) -> dict:
    """Change limits (``max_stored_gb`` is kept in bytes); the reconcile that follows applies them to the
    executor, then asks admission to look again."""
    changes = dict(changes)
    if changes.get("max_stored_gb") is not None:
        changes["max_stored_bytes"] = stored_bytes_limit(changes.pop("max_stored_gb"))
    with ctx.uow() as uow:
        row = uow.tenants.update(tenant_id, changes, utcnow()) if changes else uow.tenants.get(tenant_id)
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    if changes:
        ctx.recent_keys.forget_tenant(tenant_id)
        ctx.bus.best_effort(ctx.bus.reconcile_tenant, tenant_id)
    return row


def reconcile(ctx: Context, tenant_id: str) -> None:
    """The reconcile message's handler: the executor's per-tenant objects follow the row.

    Admission looks again only afterwards: raised limits admit queued jobs, and on
    Kubernetes their pods would be refused by the old ResourceQuota (and retried
    with backoff by the job controller) if admission ran before the quota changed.
    The pass runs right here rather than through the admission queue (one
    message and one hop fewer between the quota change and the first start).
    It is as safe here as in its actor (row locks), and a failure retries the
    whole reconcile.
    """
    with ctx.uow() as uow:
        row = uow.tenants.get(tenant_id)
    if row is not None:
        ctx.executor.ensure_tenant(row)
        admission.admit_tenant(ctx, tenant_id)


def reconcile_all(ctx: Context) -> int:
    """Ask the workers to bring every tenant's executor objects in line with its row (the watcher does at
    startup); returns how many were asked for.  The watcher only reads the cluster: the workers write."""
    with ctx.uow() as uow:
        tenant_ids = uow.tenants.all_ids()
    with ctx.bus.burst():
        for tenant_id in tenant_ids:
            ctx.bus.reconcile_tenant(tenant_id)
    return len(tenant_ids)


def get(ctx: Context, tenant_id: str) -> dict:
    with ctx.uow() as uow:
        row = uow.tenants.get(tenant_id)
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    return row


def list_page(ctx: Context, limit: int, after: str | None) -> list[dict]:
    with ctx.uow() as uow:
        return uow.tenants.list(limit, after)


def authenticate(ctx: Context, api_key: str) -> dict | None:
    """The tenant owning ``api_key``, or None.  Lookup by hash: the key itself is never stored."""
    if not api_key.startswith("sk-"):
        return None
    key_hash = hash_api_key(api_key)
    with ctx.statement() as one:
        tenant = one.tenants.get_by_key_hash(key_hash)
    if tenant is not None:
        ctx.recent_keys.remember(key_hash, tenant)
    return tenant


def recently_authenticated(ctx: Context, api_key: str) -> dict | None:
    """The tenant :func:`authenticate` found for ``api_key`` lately in this process, or None; no I/O.

    Only for a use case that the database re-checks (submission): see core.services.recent_keys.
    """
    return ctx.recent_keys.get(hash_api_key(api_key)) if api_key.startswith("sk-") else None

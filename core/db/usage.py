"""The per-tenant usage counters (``tenant_usage``): QUEUED jobs and stored bytes.

Every change of what they count updates them in the transaction that makes
it: the job insert (core.db.repository, which also checks them), admission
and cancel (jobs leaving QUEUED), collection (result bytes), deletion and
retention (bytes freed).  Decrements stop at zero, so a row put right by hand
cannot go negative.

Lock order: a transaction that changes both a tenant's jobs and its counters
locks the counters first (:meth:`UsageRepository.lock`), as the job insert
does (its UPDATE of the counters runs before its INSERT).  The other order
deadlocked: an admission that had updated a job holding idempotency key K,
against a retried submission with K that held the counters and waited on the
unique index for the admission's transaction.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db.tables import tenant_usage

_CHANGE = (
    sa.update(tenant_usage)
    .where(tenant_usage.c.tenant_id == sa.bindparam("t_id"))
    .values(
        queued_jobs=sa.func.greatest(0, tenant_usage.c.queued_jobs + sa.bindparam("queued_delta", type_=sa.Integer)),
        stored_bytes=sa.func.greatest(0, tenant_usage.c.stored_bytes + sa.bindparam("stored_delta", type_=sa.BigInteger)),
    )
)
_LOCK = sa.select(tenant_usage.c.tenant_id).where(tenant_usage.c.tenant_id.in_(
    sa.bindparam("t_ids", expanding=True))).order_by(tenant_usage.c.tenant_id).with_for_update()
_GET = sa.select(tenant_usage.c.queued_jobs, tenant_usage.c.stored_bytes).where(tenant_usage.c.tenant_id == sa.bindparam("t_id"))


class UsageRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def create(self, tenant_id: str) -> None:
        """The counters of a new tenant (idempotent)."""
        self.conn.execute(pg_insert(tenant_usage).values(tenant_id=tenant_id).on_conflict_do_nothing())

    def lock(self, *tenant_ids: str) -> None:
        """Lock these tenants' counters for the rest of the transaction, in one order (see the module's
        docstring): first, before any job row of theirs is changed."""
        if tenant_ids:
            self.conn.execute(_LOCK, {"t_ids": sorted(set(tenant_ids))}).all()

    def change(self, tenant_id: str, *, queued: int = 0, stored_bytes: int = 0) -> None:
        """Add ``queued`` QUEUED jobs and ``stored_bytes`` bytes (negative: fewer) to the tenant's counters."""
        if queued or stored_bytes:
            self.conn.execute(_CHANGE, {"t_id": tenant_id, "queued_delta": queued, "stored_delta": stored_bytes})

    def get(self, tenant_id: str) -> dict:
        """{queued_jobs, stored_bytes} of the tenant (zeros when it has no row)."""
        row = self.conn.execute(_GET, {"t_id": tenant_id}).mappings().first()
        return dict(row) if row else {"queued_jobs": 0, "stored_bytes": 0}

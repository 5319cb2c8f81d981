"""The sweeper's timeouts and retention: which jobs waited too long, whose data expired, and the marks that
say what was deleted.

Reads that lead to a decision lock their rows and skip rows another sweeper
holds (``FOR UPDATE SKIP LOCKED``), so several sweepers share the work.  A
deletion mark is written only where it is not there yet, and returns the
bytes it stops counting: a deletion racing another (retention against
``DELETE /jobs/{id}/data``) frees the bytes once.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from core.db.tables import jobs, tenants
from core.domain.states import TERMINAL, JobStatus

TERMINAL_VALUES = [s.value for s in TERMINAL]
RUN_OVER_VALUES = [s.value for s in JobStatus if s.run_over]
_WITH_NAMESPACE = sa.select(jobs, tenants.c.namespace.label("tenant_namespace")).join(tenants, tenants.c.tenant_id == jobs.c.tenant_id)


class SweepRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def _locked(self, stmt: sa.Select, limit: int) -> list[dict]:
        stmt = stmt.limit(limit).with_for_update(of=jobs, skip_locked=True)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def pending_since_before(self, cutoff: datetime, limit: int) -> list[dict]:
        """PENDING jobs (with ``tenant_namespace``) that became PENDING before ``cutoff``, locked."""
        return self._locked(_WITH_NAMESPACE.where(jobs.c.status == JobStatus.PENDING.value, jobs.c.status_since < cutoff)
                            .order_by(jobs.c.status_since), limit)

    def uncollected_since_before(self, cutoff: datetime, limit: int) -> list[dict]:
        """Jobs whose run ended (COLLECTING, or cancelled) before ``cutoff`` and whose results were never
        recorded, locked."""
        return self._locked(_WITH_NAMESPACE.where(jobs.c.status.in_(RUN_OVER_VALUES), jobs.c.results_collected_at.is_(None),
                                                  jobs.c.status_since < cutoff)
                            .order_by(jobs.c.status_since), limit)

    def inputs_expired(self, cutoff: datetime, limit: int) -> list[dict]:
        """Finished jobs (with ``tenant_namespace``) that ended before ``cutoff`` and still have their input."""
        stmt = (_WITH_NAMESPACE.where(jobs.c.status.in_(TERMINAL_VALUES), jobs.c.input_deleted_at.is_(None),
                                      jobs.c.finished_at < cutoff)
                .order_by(jobs.c.finished_at).limit(limit))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def results_expired(self, cutoff: datetime, limit: int) -> list[dict]:
        """Finished jobs (with ``tenant_namespace``) whose results were collected before ``cutoff`` and are
        still stored."""
        stmt = (_WITH_NAMESPACE.where(jobs.c.status.in_(TERMINAL_VALUES), jobs.c.results_deleted_at.is_(None),
                                      jobs.c.results_collected_at < cutoff)
                .order_by(jobs.c.results_collected_at).limit(limit))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def mark_inputs_deleted(self, job_ids: list[str], now: datetime) -> dict[str, int]:
        """Record the inputs of ``job_ids`` as deleted at ``now``; returns the bytes freed per tenant (only jobs
        not marked before count)."""
        return self._mark(job_ids, now, jobs.c.input_deleted_at, jobs.c.input_size, {})

    def mark_results_deleted(self, job_ids: list[str], now: datetime) -> dict[str, int]:
        """Record the results and logs of ``job_ids`` as deleted at ``now`` (nothing listed any more); returns
        the bytes freed per tenant."""
        return self._mark(job_ids, now, jobs.c.results_deleted_at, jobs.c.result_size, {"result_files": []})

    def _mark(self, job_ids: list[str], now: datetime, column, size, extra: dict) -> dict[str, int]:
        if not job_ids:
            return {}
        stmt = (
            sa.update(jobs)
            .where(jobs.c.job_id.in_(job_ids), column.is_(None))
            .values({column.key: now, "updated_at": now, "version": jobs.c.version + 1, **extra})
            .returning(jobs.c.tenant_id, size)
        )
        freed: dict[str, int] = {}
        for tenant_id, n_bytes in self.conn.execute(stmt):
            freed[tenant_id] = freed.get(tenant_id, 0) + int(n_bytes or 0)
        return freed

"""Repositories: every SQL statement the service runs, in one place.

Rows come back as plain dicts.  Methods that decide something (admission,
status changes) lock the rows they read (``FOR UPDATE``) so that several
worker processes can run them concurrently without double-counting.
"""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db.tables import jobs, tenant_usage, tenants
from core.domain.admission import Candidate, Usage
from core.domain.states import ACTIVE, TERMINAL, JobStatus

ACTIVE_VALUES = [s.value for s in ACTIVE]
MAX_BACKOFF_EXPONENT = 6  # at most 64 × SWEEP_GRACE_SECONDS between re-sends
TERMINAL_VALUES = [s.value for s in TERMINAL]
RUN_OVER_VALUES = [s.value for s in JobStatus if s.run_over]


# Built once: the hot paths (submission, authentication of every request, polling) only bind parameters;
# building a statement per call cost about a quarter of a simple read's CPU.
# A new job goes in only while the key it was submitted with is still its tenant's, it fits the tenant's
# per-job limits, the tenant has room in its queue (MAX_QUEUED_JOBS_PER_TENANT) and its stored bytes stay
# within max_stored_bytes: the submission may have authenticated from memory (core.services.recent_keys),
# and here PostgreSQL decides.  The gate is an UPDATE of the tenant's usage row that also counts the job in
# (one QUEUED job more, its input's bytes): concurrent submissions of a tenant take turns on that row, and
# each sees the counts the one before it committed, so exactly the limit gets in.  No ON CONFLICT: a
# duplicate idempotency key fails the whole statement, so the counts are not bumped for a job that did not
# go in.  RETURNING only the id: the caller has every value it inserted, and converting the whole row back
# (30 columns, JSON ones included) cost a fifth of the insert's CPU.
NEW_JOB_COLUMNS = ("job_id", "tenant_id", "scenario_id", "status", "cpu_request", "memory_gi", "config_file", "input_key",
                   "input_size", "idempotency_key", "submitted_at", "last_dispatch_at", "updated_at", "status_since")
IDEMPOTENCY_CONSTRAINT = "uq_jobs_tenant_idempotency_key"
# A parameter named like a column of the UPDATEd table (tenant_usage.tenant_id) would become a SET of that
# column: the tenant id is bound under another name.
_BIND = {"tenant_id": "owner_id"}
_GATE = (
    sa.update(tenant_usage)
    .where(
        tenant_usage.c.tenant_id == tenants.c.tenant_id,
        tenants.c.tenant_id == sa.bindparam("owner_id"),
        tenants.c.api_key_hash == sa.bindparam("key_hash"),
        tenants.c.max_cpu >= sa.bindparam("cpu_request"),
        tenants.c.max_memory_gi >= sa.bindparam("memory_gi"),
        tenant_usage.c.queued_jobs < sa.bindparam("max_queued"),
        tenant_usage.c.stored_bytes + sa.bindparam("input_size", type_=sa.BigInteger) <= tenants.c.max_stored_bytes,
    )
    .values(queued_jobs=tenant_usage.c.queued_jobs + 1,
            stored_bytes=tenant_usage.c.stored_bytes + sa.bindparam("input_size", type_=sa.BigInteger))
    .returning(tenant_usage.c.tenant_id)
    .cte("gate")
)
_INSERT_JOB = (
    pg_insert(jobs)
    .from_select(
        NEW_JOB_COLUMNS,
        sa.select(*(sa.cast(sa.bindparam(_BIND.get(c, c)), jobs.c[c].type) for c in NEW_JOB_COLUMNS)).select_from(_GATE),
    )
    .returning(jobs.c.job_id)
)
_TENANT_BY_KEY_HASH = sa.select(tenants).where(tenants.c.api_key_hash == sa.bindparam("key_hash"))
# ... and the admission pass (one per burst of submissions of a tenant).
_TENANT_BY_ID = sa.select(tenants).where(tenants.c.tenant_id == sa.bindparam("tenant_id"))
# FOR NO KEY UPDATE: admission passes of a tenant still take turns, but a job insert's foreign-key check (FOR
# KEY SHARE on the tenant row) does not wait for them.  With FOR UPDATE it did, and an insert holding its
# tenant's usage row (the gate) while the admission pass waited for that row was a deadlock.
_TENANT_FOR_UPDATE = _TENANT_BY_ID.with_for_update(key_share=True)
_USAGE = sa.select(
    sa.func.coalesce(sa.func.sum(jobs.c.cpu_request), 0),
    sa.func.coalesce(sa.func.sum(jobs.c.memory_gi), 0),
    sa.func.count(),
).where(jobs.c.tenant_id == sa.bindparam("tenant_id"), jobs.c.status.in_(ACTIVE_VALUES))
_QUEUE_HEAD = (
    sa.select(jobs.c.job_id, jobs.c.cpu_request, jobs.c.memory_gi)
    .where(jobs.c.tenant_id == sa.bindparam("tenant_id"), jobs.c.status == JobStatus.QUEUED.value)
    .order_by(jobs.c.submitted_at, jobs.c.job_id)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)


def _job_view_statement(of_tenant: bool) -> sa.Select:
    """The job row plus its place in the tenant's queue (1-based while QUEUED)."""
    ahead = jobs.alias("ahead")
    position = (
        sa.select(sa.func.count())
        .where(
            ahead.c.tenant_id == jobs.c.tenant_id,
            ahead.c.status == JobStatus.QUEUED.value,
            sa.tuple_(ahead.c.submitted_at, ahead.c.job_id) < sa.tuple_(jobs.c.submitted_at, jobs.c.job_id),
        )
        .scalar_subquery()
    )
    stmt = sa.select(
        jobs,
        sa.case((jobs.c.status == JobStatus.QUEUED.value, position + 1), else_=None).label("queue_position"),
    ).where(jobs.c.job_id == sa.bindparam("job_id"))
    return stmt.where(jobs.c.tenant_id == sa.bindparam("tenant_id")) if of_tenant else stmt


_JOB_VIEW = {of_tenant: _job_view_statement(of_tenant) for of_tenant in (False, True)}
# A job with its tenant's namespace: what an executor call needs (start, cancel, logs, results).
_JOB_WITH_NAMESPACE = (
    sa.select(jobs, tenants.c.namespace.label("tenant_namespace"))
    .join(tenants, tenants.c.tenant_id == jobs.c.tenant_id)
    .where(jobs.c.job_id == sa.bindparam("job_id"))
)
_JOB_WITH_NAMESPACE_OF_TENANT = _JOB_WITH_NAMESPACE.where(jobs.c.tenant_id == sa.bindparam("tenant_id"))
_JOBS_WITH_NAMESPACE = (
    sa.select(jobs, tenants.c.namespace.label("tenant_namespace"))
    .join(tenants, tenants.c.tenant_id == jobs.c.tenant_id)
    .where(jobs.c.job_id.in_(sa.bindparam("job_ids", expanding=True)))
)


def _job_by_id_statement(of_tenant: bool, lock: bool) -> sa.Select:
    stmt = sa.select(jobs).where(jobs.c.job_id == sa.bindparam("job_id"))
    if of_tenant:
        stmt = stmt.where(jobs.c.tenant_id == sa.bindparam("tenant_id"))
    return stmt.with_for_update() if lock else stmt


# A job by id, (of_tenant, lock) → statement: the status actor and cancel run it per event.
_JOB_BY_ID = {(of_tenant, lock): _job_by_id_statement(of_tenant, lock) for of_tenant in (False, True) for lock in (False, True)}
_JOB_BY_IDEMPOTENCY_KEY = sa.select(jobs).where(
    jobs.c.tenant_id == sa.bindparam("tenant_id"), jobs.c.idempotency_key == sa.bindparam("key")
)
#: UPDATE statements of :meth:`JobRepository.update_many`, one per set of changed columns (a
#: handful: the state machine's transitions).  Building one per call was a third of an admission
#: pass's CPU (measured with cProfile, one job per pass).
_UPDATE_MANY: dict[tuple[str, ...], sa.Update] = {}


def _update_many_statement(columns: tuple[str, ...]) -> sa.Update:
    stmt = _UPDATE_MANY.get(columns)
    if stmt is None:
        # Bind names may not be column names in an UPDATE's SET clause: hence the prefix.
        stmt = (
            sa.update(jobs)
            .where(jobs.c.job_id.in_(sa.bindparam("job_ids", expanding=True)))
            .values({**{column: sa.bindparam(f"new_{column}") for column in columns}, "version": jobs.c.version + 1})
        )
        _UPDATE_MANY[columns] = stmt
    return stmt


class InvalidCursor(ValueError):
    pass


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(values, list) or len(values) != 2:
            raise ValueError
        return [datetime.fromisoformat(values[0]), str(uuid.UUID(str(values[1])))]
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidCursor("cursor is not a value returned as next_cursor by this endpoint") from None


class TenantRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add(self, row: dict) -> dict | None:
        """Insert a tenant; None when the id (or namespace) is taken."""
        stmt = pg_insert(tenants).values(**row).on_conflict_do_nothing().returning(*tenants.c)
        result = self.conn.execute(stmt).mappings().first()
        return dict(result) if result else None

    def get(self, tenant_id: str, *, lock: bool = False) -> dict | None:
        stmt = _TENANT_FOR_UPDATE if lock else _TENANT_BY_ID
        row = self.conn.execute(stmt, {"tenant_id": tenant_id}).mappings().first()
        return dict(row) if row else None

    def get_by_key_hash(self, key_hash: str) -> dict | None:
        row = self.conn.execute(_TENANT_BY_KEY_HASH, {"key_hash": key_hash}).mappings().first()
        return dict(row) if row else None

    def list(self, limit: int, after: str | None = None) -> list[dict]:
        stmt = sa.select(tenants).order_by(tenants.c.tenant_id).limit(limit)
        if after:
            stmt = stmt.where(tenants.c.tenant_id > after)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def update(self, tenant_id: str, changes: dict, now: datetime) -> dict | None:
        stmt = (
            sa.update(tenants)
            .where(tenants.c.tenant_id == tenant_id)
            .values(**changes, updated_at=now)
            .returning(*tenants.c)
        )
        row = self.conn.execute(stmt).mappings().first()
        return dict(row) if row else None

    def all_ids(self) -> list[str]:
        return list(self.conn.execute(sa.select(tenants.c.tenant_id).order_by(tenants.c.tenant_id)).scalars())


class JobRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- writes ----------------------------------------------------------------
    def add(self, row: dict, key_hash: str, max_queued: int) -> str:
        """Insert a job (``row`` holds :data:`NEW_JOB_COLUMNS`) and count it in its tenant's usage.

        Returns ``"inserted"``; ``"refused"`` when ``key_hash`` is no longer the tenant's key, or the job
        exceeds its per-job limits, or the tenant's queue is full (``max_queued``), or its input would pass
        the tenant's stored bytes; ``"duplicate"`` when (tenant, idempotency_key) already names a job.
        """
        params = {_BIND.get(k, k): v for k, v in row.items()}
        params.update(key_hash=key_hash, max_queued=max_queued)
        try:
            inserted = self.conn.execute(_INSERT_JOB, params).first()
        except sa.exc.IntegrityError as exc:
            if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) != IDEMPOTENCY_CONSTRAINT:
                raise
            self.conn.rollback()  # the statement failed whole: nothing was counted
            return "duplicate"
        return "inserted" if inserted is not None else "refused"

    def update(self, job_id: str, changes: dict, now: datetime) -> None:
        self.update_many([job_id], changes, now)

    def update_many(self, job_ids: list[str], changes: dict, now: datetime) -> None:
        """The same changes to every job of ``job_ids``, in one statement (an admission pass admits many)."""
        values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in changes.items()}
        if "status" in values:
            values["dispatch_attempts"] = 0  # it moved: the next stall starts a fresh backoff
            values["status_since"] = now
        values["updated_at"] = now
        columns = tuple(sorted(values))
        params = {f"new_{column}": values[column] for column in columns}
        self.conn.execute(_update_many_statement(columns), {**params, "job_ids": list(job_ids)})

    def mark_dispatched(self, job_ids: Iterable[str], now: datetime) -> None:
        """Record a re-send by the sweeper (the backoff doubles)."""
        ids = list(job_ids)
        if ids:
            self.conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id.in_(ids))
                .values(last_dispatch_at=now, dispatch_attempts=jobs.c.dispatch_attempts + 1)
            )

    def mark_queue_dispatched(self, tenant_ids: list[str], now: datetime) -> None:
        if tenant_ids:
            self.conn.execute(
                sa.update(jobs)
                .where(jobs.c.tenant_id.in_(tenant_ids), jobs.c.status == JobStatus.QUEUED.value)
                .values(last_dispatch_at=now, dispatch_attempts=jobs.c.dispatch_attempts + 1)
            )

    # -- reads -----------------------------------------------------------------
    def get(self, job_id: str, tenant_id: str | None = None, *, lock: bool = False) -> dict | None:
        params = {"job_id": job_id} if tenant_id is None else {"job_id": job_id, "tenant_id": tenant_id}
        row = self.conn.execute(_JOB_BY_ID[tenant_id is not None, lock], params).mappings().first()
        return dict(row) if row else None

    def get_view(self, job_id: str, tenant_id: str | None) -> dict | None:
        """One statement for the poller: the row plus its place in the tenant's queue."""
        params = {"job_id": job_id} if tenant_id is None else {"job_id": job_id, "tenant_id": tenant_id}
        row = self.conn.execute(_JOB_VIEW[tenant_id is not None], params).mappings().first()
        return dict(row) if row else None

    def get_with_namespace(self, job_id: str, tenant_id: str | None = None) -> dict | None:
        """The job row plus ``tenant_namespace``, in one statement."""
        if tenant_id is None:
            row = self.conn.execute(_JOB_WITH_NAMESPACE, {"job_id": job_id}).mappings().first()
        else:
            row = self.conn.execute(_JOB_WITH_NAMESPACE_OF_TENANT, {"job_id": job_id, "tenant_id": tenant_id}).mappings().first()
        return dict(row) if row else None

    def get_many_with_namespace(self, job_ids: list[str]) -> list[dict]:
        """:meth:`get_with_namespace` for several jobs in one statement, in the order of ``job_ids`` (missing ones left out)."""
        if not job_ids:
            return []
        found = {str(r["job_id"]): dict(r) for r in self.conn.execute(_JOBS_WITH_NAMESPACE, {"job_ids": list(job_ids)}).mappings()}
        return [found[j] for j in job_ids if j in found]

    def get_by_idempotency_key(self, tenant_id: str, key: str) -> dict | None:
        row = self.conn.execute(_JOB_BY_IDEMPOTENCY_KEY, {"tenant_id": tenant_id, "key": key}).mappings().first()
        return dict(row) if row else None

    def page(self, tenant_id: str | None, status: str | None, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """Jobs newest first, ``limit`` of them after ``cursor``; returns the next cursor."""
        stmt = sa.select(jobs).order_by(jobs.c.submitted_at.desc(), jobs.c.job_id.desc()).limit(limit + 1)
        if tenant_id is not None:
            stmt = stmt.where(jobs.c.tenant_id == tenant_id)
        if status is not None:
            stmt = stmt.where(jobs.c.status == status)
        if cursor:
            at, job_id = decode_cursor(cursor)
            stmt = stmt.where(sa.tuple_(jobs.c.submitted_at, jobs.c.job_id) < sa.tuple_(sa.literal(at), sa.literal(job_id, type_=jobs.c.job_id.type)))
        rows = [dict(r) for r in self.conn.execute(stmt).mappings()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1]["submitted_at"], rows[-1]["job_id"])
        return rows, next_cursor

    def usage(self, tenant_id: str) -> Usage:
        row = self.conn.execute(_USAGE, {"tenant_id": tenant_id}).one()
        return Usage(cpu=int(row[0]), memory_gi=int(row[1]), jobs=int(row[2]))

    def queue_head(self, tenant_id: str, limit: int) -> list[Candidate]:
        rows = self.conn.execute(_QUEUE_HEAD, {"tenant_id": tenant_id, "limit": limit})
        return [Candidate(job_id=str(r.job_id), cpu=r.cpu_request, memory_gi=r.memory_gi) for r in rows]

    def counts_by_status(self, tenant_id: str | None = None) -> dict[str, int]:
        stmt = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
        if tenant_id is not None:
            stmt = stmt.where(jobs.c.tenant_id == tenant_id)
        counts = {s.value: 0 for s in JobStatus}
        counts.update({status: n for status, n in self.conn.execute(stmt)})
        return counts

    def admission_latency_quantiles(self, since: datetime, quantiles: tuple[float, ...]) -> list[float | None]:
        """Quantiles of submission → admission, in seconds, over the jobs admitted since ``since``."""
        waited = sa.func.extract("epoch", jobs.c.admitted_at - jobs.c.submitted_at)
        row = self.conn.execute(
            sa.select(*(sa.func.percentile_cont(q).within_group(waited) for q in quantiles))
            .where(jobs.c.admitted_at >= since)
        ).one()
        return [None if v is None else float(v) for v in row]

    def finished_since(self, since: datetime) -> dict[str, int]:
        stmt = (
            sa.select(jobs.c.status, sa.func.count())
            .where(jobs.c.finished_at >= since)
            .group_by(jobs.c.status)
        )
        return {status: n for status, n in self.conn.execute(stmt)}

    def submitted_since(self, since: datetime) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).where(jobs.c.submitted_at >= since)).scalar_one())

    # -- the sweeper's questions --------------------------------------------------
    # A job is stalled when it has not moved for grace × 2^attempts since its last message.
    @staticmethod
    def _stalled(now: datetime, grace_seconds: float):
        backoff = sa.func.power(2, sa.func.least(jobs.c.dispatch_attempts, MAX_BACKOFF_EXPONENT))
        return jobs.c.last_dispatch_at < sa.literal(now) - sa.func.make_interval(0, 0, 0, 0, 0, 0, grace_seconds * backoff)

    def tenants_with_stalled_queue(self, now: datetime, grace_seconds: float) -> list[str]:
        """Tenants whose QUEUED jobs have waited past the grace period since their last message."""
        stmt = (
            sa.select(jobs.c.tenant_id)
            .where(jobs.c.status == JobStatus.QUEUED.value, self._stalled(now, grace_seconds))
            .group_by(jobs.c.tenant_id)
            .order_by(sa.func.min(jobs.c.submitted_at))
        )
        return list(self.conn.execute(stmt).scalars())

    def stalled(self, statuses: list[JobStatus], now: datetime, grace_seconds: float, limit: int = 500) -> list[str]:
        stmt = (
            sa.select(jobs.c.job_id)
            .where(jobs.c.status.in_([s.value for s in statuses]), self._stalled(now, grace_seconds))
            .order_by(jobs.c.last_dispatch_at)
            .limit(limit)
        )
        return [str(j) for j in self.conn.execute(stmt).scalars()]

    def uncollected(self, now: datetime, grace_seconds: float, limit: int = 500) -> list[str]:
        """Finished jobs whose results were never recorded (the collect message was lost)."""
        stmt = (
            sa.select(jobs.c.job_id)
            .where(
                jobs.c.status.in_(RUN_OVER_VALUES),
                jobs.c.results_collected_at.is_(None),
                self._stalled(now, grace_seconds),
            )
            .limit(limit)
        )
        return [str(j) for j in self.conn.execute(stmt).scalars()]

    def oldest_active(self, limit: int) -> list[dict]:
        stmt = (
            sa.select(jobs)
            .where(jobs.c.status.in_(ACTIVE_VALUES))
            .order_by(jobs.c.admitted_at)
            .limit(limit)
        )
        return [dict(r) for r in self.conn.execute(stmt).mappings()]


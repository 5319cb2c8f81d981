"""The schema, as SQLAlchemy Core tables (Alembic migrations mirror it).

Indexes follow the hot queries: a tenant's jobs newest first (listing and
cursor pagination), a tenant's QUEUED jobs oldest first (admission and
``queue_position``), and a tenant's active jobs (quota usage).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("namespace", sa.Text, nullable=False, unique=True),
    sa.Column("api_key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("max_cpu", sa.Integer, nullable=False),
    sa.Column("max_memory_gi", sa.Integer, nullable=False),
    sa.Column("max_concurrent_jobs", sa.Integer, nullable=False),
    # Most bytes of inputs, results and logs the tenant may keep in the store (tenant_usage.stored_bytes).
    sa.Column("max_stored_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# What a tenant uses that a submission must not pass, kept as counters updated in the same transaction as
# what changes them: a submission's insert (core.db.repository) checks and bumps them in one statement, so
# concurrent submissions take turns on this row and never both take the last place.  A row of its own, not
# columns of ``tenants``: admission locks the tenant row for its decision, and submissions must not wait for that.
tenant_usage = sa.Table(
    "tenant_usage",
    metadata,
    sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.tenant_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("queued_jobs", sa.Integer, nullable=False, server_default="0"),
    # Inputs not yet deleted (jobs.input_size) plus collected results and logs not yet deleted (jobs.result_size).
    sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.tenant_id", ondelete="CASCADE"), nullable=False),
    sa.Column("scenario_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("cpu_request", sa.Integer, nullable=False),
    sa.Column("memory_gi", sa.Integer, nullable=False),
    sa.Column("config_file", sa.Text, nullable=False),
    sa.Column("input_key", sa.Text, nullable=False),
    sa.Column("input_size", sa.BigInteger, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("admitted_at", sa.DateTime(timezone=True)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("pending_reason", sa.Text),
    # While COLLECTING: how the run ended (SUCCEEDED, FAILED, CANCELLED), the status it takes once collected.
    sa.Column("outcome", sa.Text),
    sa.Column("kpis", JSONB),
    sa.Column("result_files", JSONB),
    sa.Column("results_collected_at", sa.DateTime(timezone=True)),
    sa.Column("log_archived", sa.Boolean, nullable=False, server_default=sa.false()),
    # Bytes of the collected results and log (counted in tenant_usage.stored_bytes until deleted).
    sa.Column("result_size", sa.BigInteger, nullable=False, server_default="0"),
    # Why the last collection attempt could not store the results (named when COLLECT_TIMEOUT_SECONDS ends it).
    sa.Column("collect_error", sa.Text),
    # When the input archive, and the results and log, were deleted (by retention or DELETE /jobs/{id}/data),
    # and when the tenant asked for the deletion of all of it.
    sa.Column("input_deleted_at", sa.DateTime(timezone=True)),
    sa.Column("results_deleted_at", sa.DateTime(timezone=True)),
    sa.Column("data_deleted_at", sa.DateTime(timezone=True)),
    # When the job entered its current status (a new pending_reason keeps it): the clock of the PENDING and
    # COLLECTING timeouts.
    sa.Column("status_since", sa.DateTime(timezone=True)),
    # When a message that should move this job on was last sent; the sweeper re-sends past a grace period.
    sa.Column("last_dispatch_at", sa.DateTime(timezone=True), nullable=False),
    # How often the sweeper re-sent it since the job last moved: each re-send waits twice as long,
    # so jobs that merely wait (for a slot, for quota) cost little.
    sa.Column("dispatch_attempts", sa.Integer, nullable=False, server_default="0"),
    # Bumped on every change: the ETag of GET /jobs/{id}.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
)

sa.Index("ix_jobs_tenant_submitted", jobs.c.tenant_id, jobs.c.submitted_at.desc(), jobs.c.job_id.desc())
sa.Index(
    "ix_jobs_tenant_queued",
    jobs.c.tenant_id,
    jobs.c.submitted_at,
    postgresql_where=jobs.c.status == "QUEUED",
)
sa.Index(
    "ix_jobs_tenant_active",
    jobs.c.tenant_id,
    postgresql_where=jobs.c.status.in_(["ADMITTED", "PENDING", "RUNNING"]),
)
sa.Index("ix_jobs_status_submitted", jobs.c.status, jobs.c.submitted_at.desc())

# Files a collector pod uploaded for a job (PUT /internal/jobs/{id}/files/{name}), as the API received them:
# the worker's collection checks them against the collector's own manifest.  A re-upload replaces its row.
collected_files = sa.Table(
    "collected_files",
    metadata,
    sa.Column("job_id", UUID(as_uuid=False), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
)

# The sweeper's timeouts and retention (small sets: partial indexes).
sa.Index("ix_jobs_pending_since", jobs.c.status_since, postgresql_where=jobs.c.status == "PENDING")
sa.Index("ix_jobs_collecting_since", jobs.c.status_since, postgresql_where=jobs.c.status == "COLLECTING")
sa.Index(
    "ix_jobs_input_retention",
    jobs.c.finished_at,
    postgresql_where=sa.and_(jobs.c.input_deleted_at.is_(None), jobs.c.status.in_(["SUCCEEDED", "FAILED", "CANCELLED"])),
)
sa.Index(
    "ix_jobs_result_retention",
    jobs.c.results_collected_at,
    postgresql_where=sa.and_(jobs.c.results_deleted_at.is_(None), jobs.c.results_collected_at.isnot(None)),
)

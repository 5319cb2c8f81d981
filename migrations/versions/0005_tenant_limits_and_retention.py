"""Tenant limits and retention: stored bytes per tenant, counters checked by the job insert, deletion marks,
and when each job entered its status (the clock of the PENDING and COLLECTING timeouts)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TERMINAL = "('SUCCEEDED', 'FAILED', 'CANCELLED')"


def upgrade() -> None:
    from core.domain.admission import stored_bytes_limit
    from core.settings import Settings

    # Tenants registered before have the limit a new tenant gets now.
    default = stored_bytes_limit(Settings().default_max_stored_gb)
    op.add_column("tenants", sa.Column("max_stored_bytes", sa.BigInteger(), nullable=False, server_default=str(default)))
    op.alter_column("tenants", "max_stored_bytes", server_default=None)

    op.add_column("jobs", sa.Column("result_size", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("collect_error", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("input_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("results_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("data_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("status_since", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET status_since = updated_at")
    op.execute(
        "UPDATE jobs SET result_size = s.total FROM ("
        " SELECT job_id, coalesce(sum((f->>'size')::bigint), 0) AS total"
        " FROM jobs, jsonb_array_elements(CASE WHEN jsonb_typeof(result_files) = 'array' THEN result_files ELSE '[]' END) f"
        " GROUP BY job_id) s WHERE jobs.job_id = s.job_id"
    )

    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.Text(), sa.ForeignKey("tenants.tenant_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("queued_jobs", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(
        "INSERT INTO tenant_usage (tenant_id, queued_jobs, stored_bytes) SELECT t.tenant_id,"
        " (SELECT count(*) FROM jobs j WHERE j.tenant_id = t.tenant_id AND j.status = 'QUEUED'),"
        " (SELECT coalesce(sum(j.input_size + j.result_size), 0) FROM jobs j WHERE j.tenant_id = t.tenant_id)"
        " FROM tenants t"
    )

    op.create_index("ix_jobs_pending_since", "jobs", ["status_since"], postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index("ix_jobs_collecting_since", "jobs", ["status_since"], postgresql_where=sa.text("status = 'COLLECTING'"))
    op.create_index("ix_jobs_input_retention", "jobs", ["finished_at"],
                    postgresql_where=sa.text(f"input_deleted_at IS NULL AND status IN {TERMINAL}"))
    op.create_index("ix_jobs_result_retention", "jobs", ["results_collected_at"],
                    postgresql_where=sa.text("results_deleted_at IS NULL AND results_collected_at IS NOT NULL"))


def downgrade() -> None:
    for index in ("ix_jobs_result_retention", "ix_jobs_input_retention", "ix_jobs_collecting_since", "ix_jobs_pending_since"):
        op.drop_index(index, table_name="jobs")
    op.drop_table("tenant_usage")
    for column in ("status_since", "data_deleted_at", "results_deleted_at", "input_deleted_at", "collect_error", "result_size"):
        op.drop_column("jobs", column)
    op.drop_column("tenants", "max_stored_bytes")

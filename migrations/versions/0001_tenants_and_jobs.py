"""tenants and jobs

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 19:01:01.766729
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('tenant_id', sa.Text(), nullable=False),
    sa.Column('namespace', sa.Text(), nullable=False),
    sa.Column('api_key_hash', sa.Text(), nullable=False),
    sa.Column('max_cpu', sa.Integer(), nullable=False),
    sa.Column('max_memory_gi', sa.Integer(), nullable=False),
    sa.Column('max_concurrent_jobs', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id'),
    sa.UniqueConstraint('api_key_hash'),
    sa.UniqueConstraint('namespace')
    )
    op.create_table('jobs',
    sa.Column('job_id', sa.UUID(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Text(), nullable=False),
    sa.Column('scenario_id', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('cpu_request', sa.Integer(), nullable=False),
    sa.Column('memory_gi', sa.Integer(), nullable=False),
    sa.Column('config_file', sa.Text(), nullable=False),
    sa.Column('input_key', sa.Text(), nullable=False),
    sa.Column('input_size', sa.BigInteger(), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('pending_reason', sa.Text(), nullable=True),
    sa.Column('kpis', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('result_files', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('results_collected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('log_archived', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('last_dispatch_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id'),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name='uq_jobs_tenant_idempotency_key')
    )
    op.create_index('ix_jobs_status_submitted', 'jobs', ['status', sa.literal_column('submitted_at DESC')], unique=False)
    op.create_index('ix_jobs_tenant_active', 'jobs', ['tenant_id'], unique=False, postgresql_where=sa.text("status IN ('ADMITTED', 'PENDING', 'RUNNING')"))
    op.create_index('ix_jobs_tenant_queued', 'jobs', ['tenant_id', 'submitted_at'], unique=False, postgresql_where=sa.text("status = 'QUEUED'"))
    op.create_index('ix_jobs_tenant_submitted', 'jobs', ['tenant_id', sa.literal_column('submitted_at DESC'), sa.literal_column('job_id DESC')], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_tenant_submitted', table_name='jobs')
    op.drop_index('ix_jobs_tenant_queued', table_name='jobs', postgresql_where=sa.text("status = 'QUEUED'"))
    op.drop_index('ix_jobs_tenant_active', table_name='jobs', postgresql_where=sa.text("status IN ('ADMITTED', 'PENDING', 'RUNNING')"))
    op.drop_index('ix_jobs_status_submitted', table_name='jobs')
    op.drop_table('jobs')
    op.drop_table('tenants')

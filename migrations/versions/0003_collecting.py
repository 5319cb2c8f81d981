"""jobs.outcome: a COLLECTING job remembers how its run ended until its results are stored

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("outcome", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "outcome")

"""Alembic environment: migrates the database named by DATABASE_URL to core.db.tables."""
from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from core.db.engine import sqlalchemy_url
from core.db.tables import metadata
from core.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or Settings().database_url
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()

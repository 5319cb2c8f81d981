"""Unit of work: one transaction, and the repositories that run inside it.

Use cases receive a ``UnitOfWork`` factory, so tests can hand them a real
PostgreSQL one and domain tests need no database at all.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator

import sqlalchemy as sa

from core.db.repository import JobRepository, TenantRepository


class UnitOfWork:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.tenants = TenantRepository(conn)
        self.jobs = JobRepository(conn)


UnitOfWorkFactory = Callable[[], ContextManager[UnitOfWork]]


def sql_unit_of_work(engine: sa.Engine) -> UnitOfWorkFactory:
    @contextmanager
    def factory() -> Iterator[UnitOfWork]:
        with engine.begin() as conn:
            yield UnitOfWork(conn)

    return factory


def sql_single_statement(autocommit_engine: sa.Engine) -> UnitOfWorkFactory:
    """Repositories on an autocommit connection: each statement commits as it runs.

    Only for a unit that runs exactly one statement (or only reads, where one
    snapshot across statements is not needed); anything that must be
    all-or-nothing uses :func:`sql_unit_of_work`.
    """
    @contextmanager
    def factory() -> Iterator[UnitOfWork]:
        with autocommit_engine.connect() as conn:
            yield UnitOfWork(conn)

    return factory

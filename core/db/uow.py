"""Unit of work: one transaction, and the repositories that run inside it.

Use cases receive a ``UnitOfWork`` factory, so tests can hand them a real
PostgreSQL one and domain tests need no database at all.  A server that
cannot be reached surfaces as :class:`DatabaseUnavailable` (the API's 503).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator

import psycopg2.extensions
import sqlalchemy as sa

from core.db.repository import JobRepository, TenantRepository
from core.db.uploads import UploadRepository
from core.db.sweeps import SweepRepository
from core.db.usage import UsageRepository
from core.unavailable import Unavailable


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached or cannot serve now (refused, dropped, shutting down, out of connections)."""


def _unreachable(exc: sa.exc.DBAPIError) -> bool:
    """The server cannot serve now, rather than refusing this statement: a dropped connection, SQLSTATE class
    08 (connection exception), 53 (insufficient resources: too many connections) or 57 (operator intervention:
    shutting down, starting up), or no SQLSTATE at all (the client gave up: refused, reset).  A deadlock or
    serialization failure (class 40) is an answer to this transaction, and stays what it is."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "pgcode", None)
    if code:
        return code[:2] in ("08", "53", "57")
    return not isinstance(exc.orig, psycopg2.extensions.TransactionRollbackError)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) and _unreachable(exc):
            raise DatabaseUnavailable("PostgreSQL cannot be reached; try again shortly") from exc
        raise


class UnitOfWork:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.tenants = TenantRepository(conn)
        self.jobs = JobRepository(conn)
        self.uploads = UploadRepository(conn)
        self.usage = UsageRepository(conn)
        self.sweeps = SweepRepository(conn)

    def locked_job(self, job_id: str, tenant_id: str) -> dict | None:
        """The tenant's job row, locked for update after the tenant's usage row (the lock order every writer
        of both follows: core.db.usage); None when the tenant has no such job."""
        self.usage.lock(tenant_id)
        return self.jobs.get(job_id, tenant_id, lock=True)


UnitOfWorkFactory = Callable[[], ContextManager[UnitOfWork]]


def sql_unit_of_work(engine: sa.Engine) -> UnitOfWorkFactory:
    @contextmanager
    def factory() -> Iterator[UnitOfWork]:
        with _reachable(), engine.begin() as conn:
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
        with _reachable(), autocommit_engine.connect() as conn:
            yield UnitOfWork(conn)

    return factory

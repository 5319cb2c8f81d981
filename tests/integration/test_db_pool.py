"""The pool's idle ping on the real PostgreSQL: a dead idle connection is replaced, a busy one is not pinged."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.db import engine as engine_module
from core.db.engine import sqlalchemy_url


def _engine(stack) -> sa.Engine:
    engine = sa.create_engine(sqlalchemy_url(stack.env["DATABASE_URL"]), pool_size=1, max_overflow=0)
    engine_module._ping_when_idle(engine.pool)
    return engine


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(stack, pid: int) -> None:
    """Terminate a backend and wait (bounded, 5 s) until it is gone."""
    killer = sa.create_engine(sqlalchemy_url(stack.env["DATABASE_URL"]), poolclass=sa.pool.NullPool)
    try:
        with killer.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
    finally:
        killer.dispose()


def _age_pooled_connection(engine: sa.Engine, seconds: float) -> None:
    records = list(engine.pool._pool.queue)  # the idle records (pool_size=1: exactly one)
    assert len(records) == 1
    records[0].info["idle_since"] -= seconds


def test_idle_connection_that_died_is_replaced(stack):
    engine = _engine(stack)
    try:
        first = _backend_pid(engine)
        _terminate(stack, first)
        _age_pooled_connection(engine, engine_module.IDLE_PING_SECONDS + 1)
        second = _backend_pid(engine)  # would raise OperationalError without the ping
        assert second != first
    finally:
        engine.dispose()


def test_recently_used_connection_is_not_pinged(stack):
    # No round trip for a connection used moments ago: a backend killed in between is only noticed
    # by the transaction itself (which fails once; SQLAlchemy then invalidates the pool).
    engine = _engine(stack)
    try:
        first = _backend_pid(engine)
        _terminate(stack, first)
        with pytest.raises(sa.exc.OperationalError):
            _backend_pid(engine)
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def _settings(stack):
    from core.settings import Settings

    return Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"])


def test_single_statement_units_commit_each_statement_and_units_of_work_do_not(stack):
    """ctx.statement() runs in autocommit (each statement its own transaction, no BEGIN/COMMIT round trips);
    ctx.uow() keeps one transaction across its statements."""
    from core.bootstrap import bootstrap

    ctx = bootstrap(_settings(stack))
    xid = sa.text("SELECT txid_current()")
    with ctx.statement() as one:
        first, second = one.conn.execute(xid).scalar_one(), one.conn.execute(xid).scalar_one()
    assert second > first
    with ctx.uow() as uow:
        first, second = uow.conn.execute(xid).scalar_one(), uow.conn.execute(xid).scalar_one()
    assert second == first
    # the autocommit engine is its own pool: a unit of work never gets an autocommit connection
    with ctx.uow() as uow:
        assert not uow.conn.connection.dbapi_connection.autocommit

"""Engine construction: pooled engines per process, sized from settings.

Two per database: the transactional one behind every unit of work, and an
autocommit one for units of exactly one statement (the per-request key lookup,
the poller's job view, the submission's insert).  In autocommit, psycopg2 sends
no BEGIN and no COMMIT: one round trip instead of three, measured here at a
third less client CPU per statement.  A single statement is atomic on its own.
"""
from __future__ import annotations

import time

import sqlalchemy as sa

from core.settings import Settings

_engines: dict[tuple[str, bool], sa.Engine] = {}


def sqlalchemy_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def get_engine(settings: Settings, *, autocommit: bool = False) -> sa.Engine:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (make run sets it for the embedded server)")
    key = (settings.database_url, autocommit)
    engine = _engines.get(key)
    if engine is None:
        engine = sa.create_engine(
            sqlalchemy_url(settings.database_url),
            pool_size=settings.db_pool_min,
            max_overflow=max(0, settings.db_pool_max - settings.db_pool_min),
            pool_recycle=1800,
            **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        )
        _ping_when_idle(engine.pool)
        _engines[key] = engine
    return engine


#: A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(pool: sa.pool.Pool) -> None:
    """Test a connection at checkout only when it sat idle; a busy pool pays no round trip.

    ``pool_pre_ping`` would add a ``SELECT 1`` to every transaction — a quarter
    of PostgreSQL's work on the submission path.  A connection used moments
    ago is almost surely alive; one that idled may have been cut (a database
    restart, a proxy's idle timeout).  Raising ``DisconnectionError`` here makes
    the pool replace it and retry.  A restart inside the idle window still
    fails that one transaction, after which SQLAlchemy invalidates the pool.
    """
    @sa.event.listens_for(pool, "checkin")
    def _used(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(pool, "checkout")
    def _check(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:  # noqa: BLE001 — any failure means the connection is gone
            raise sa.exc.DisconnectionError(f"pooled connection idle for {time.monotonic() - idle_since:.0f}s is dead") from exc


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()

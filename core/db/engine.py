"""Engine construction: one pooled engine per process, sized from settings."""
from __future__ import annotations

import sqlalchemy as sa

from core.settings import Settings

_engines: dict[str, sa.Engine] = {}


def sqlalchemy_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pin the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def get_engine(settings: Settings) -> sa.Engine:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (make run sets it for the embedded server)")
    engine = _engines.get(settings.database_url)
    if engine is None:
        engine = sa.create_engine(
            sqlalchemy_url(settings.database_url),
            pool_size=settings.db_pool_min,
            max_overflow=max(0, settings.db_pool_max - settings.db_pool_min),
            pool_pre_ping=True,
            pool_recycle=1800,
        )
        _engines[settings.database_url] = engine
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()

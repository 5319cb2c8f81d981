"""The service's one clock: timezone-aware UTC, as every timestamp column stores it."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

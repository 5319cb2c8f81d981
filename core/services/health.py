"""Readiness: can this process reach what it depends on."""
from __future__ import annotations

from core.services.context import Context


def readiness(ctx: Context) -> dict[str, str]:
    """``{dependency: "ok" | why not}`` for PostgreSQL and Redis."""
    checks = {}
    try:
        with ctx.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001 — any failure means not ready
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        ctx.bus.broker.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    return checks

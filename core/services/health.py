"""Readiness: can this process reach what it depends on, and how simulations run."""
from __future__ import annotations

from core.services.context import Context

#: Checks that inform rather than gate: an operator's deliberate choice, reported on /ready.
ADVISORY = ("sandbox",)


def readiness(ctx: Context) -> dict[str, str]:
    """``{dependency: "ok" | why not}`` for PostgreSQL and Redis; with EXECUTOR=local also whether
    simulations run sandboxed (the simulation workers refuse to start where the sandbox cannot work)."""
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
    if ctx.settings.executor == "local":
        checks["sandbox"] = "ok" if ctx.settings.local_sandbox == "on" else \
            "off (LOCAL_SANDBOX=off): simulations are not confined"
    return checks


def is_ready(checks: dict[str, str]) -> bool:
    """Every check but the advisory ones says "ok"."""
    return all(value == "ok" for name, value in checks.items() if name not in ADVISORY)

"""The layering the README promises, checked on the source: one composition root that nothing below
imports back, a domain without I/O, executors and storage that know no use case, and routes that reach
adapters only through ``core/services``."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _offenders(folder: str, forbidden: tuple[str, ...], exempt: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in _modules(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel in exempt:
            continue
        bad = sorted(m for m in _imports(path) if m.startswith(forbidden))
        if bad:
            out.append(f"{rel}: {', '.join(bad)}")
    return out


def test_nothing_below_the_composition_root_imports_it():
    assert _offenders("core", ("core.bootstrap",), exempt=("core/bootstrap.py",)) == []


@pytest.mark.parametrize("folder", ["core/executors", "core/storage", "core/db", "core/scenario", "core/domain"])
def test_adapters_and_the_domain_know_no_use_case(folder):
    assert _offenders(folder, ("core.services", "api", "workers")) == []


def test_the_domain_does_no_io():
    io = ("core.db", "core.storage", "core.executors", "core.messaging", "core.broker", "sqlalchemy", "redis",
          "dramatiq", "kubernetes", "boto3", "httpx", "subprocess", "socket")
    assert _offenders("core/domain", io) == []


def test_routes_reach_adapters_only_through_the_use_cases():
    adapters = ("core.db", "core.storage", "core.messaging", "core.broker", "core.executors", "sqlalchemy", "redis")
    assert _offenders("api", adapters) == []
    for path in _modules("api"):
        source = path.read_text()
        for attribute in ("ctx.store", "ctx.bus", "ctx.engine", "ctx.uow", "ctx.statement", "ctx.executor"):
            assert attribute not in source, f"{path.relative_to(ROOT)} uses {attribute} directly"

"""Every third-party package the project imports is declared in pyproject.toml: the service's own code
(api, workers, core, cli, devstack, devcluster) among the dependencies, the tests and benchmarks in them or
the ``test`` extra.  A package that only arrives as another one's dependency can vanish with its update."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"api", "workers", "core", "cli", "devstack", "devcluster", "tests", "bench", "migrations"}
SERVICE = ("api", "workers", "core", "cli", "devstack", "devcluster", "migrations")
#: Test tooling that lives beside the service's code: checked with the tests.
TEST_TOOLING = ("devstack/emulators.py",)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _files(folders, *, plus=(), minus=()) -> list[Path]:
    found = [p for f in folders for p in (ROOT / f).rglob("*.py") if ".venv" not in p.parts]
    return [p for p in found if p.relative_to(ROOT).as_posix() not in minus] + [ROOT / p for p in plus]


def _undeclared(files: list[Path], declared: set[str]) -> list[str]:
    imported: dict[str, str] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                imported.setdefault(module.split(".")[0], path.relative_to(ROOT).as_posix())
    dists = packages_distributions()
    missing = []
    for module, where in sorted(imported.items()):
        if module in OWN or module in sys.stdlib_module_names:
            continue
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        if not owners:
            missing.append(f"{module} (imported by {where}) is not installed at all")
        elif not owners & declared:
            missing.append(f"{module} (imported by {where}) comes from {sorted(owners)}, not declared")
    return missing


def test_the_service_declares_what_it_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _undeclared(_files(SERVICE, minus=TEST_TOOLING), _names(project["dependencies"])) == []


def test_tests_and_benchmarks_declare_what_they_import():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    assert _undeclared(_files(("tests", "bench"), plus=TEST_TOOLING), declared) == []

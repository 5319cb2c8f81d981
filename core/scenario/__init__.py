"""Upload validation for tenant scenarios: plain Python, no network, no database.

A scenario is a ZIP archive holding a SUMO configuration (``.sumocfg``) and
the files it references. :func:`inspect_archive` decides from the archive
alone whether it is safe and complete (zip-bomb limits, entry names, the
config's input files, its outputs, TraCI and thread options, and everything
the XML files sumo loads point at) and describes it as a :class:`Scenario`;
:func:`extract_scenario` writes exactly the accepted files. Every refusal is
a :class:`ScenarioError` carrying an HTTP status code. The rule throughout:
read the scenario the way sumo 1.28 does, refuse every way it would reach
outside its run (absolute paths, ``..``, sockets, ``${VAR}`` and ``~``
expansion, schema fetches), and never refuse what sumo itself runs.

Modules: ``errors`` (the exception), ``paths`` (name/path rules shared by all
checks), ``xmlsafe`` (expat without DOCTYPE/ENTITY, bounded memory, no
recursion), ``archive`` (ZIP safety and the public API), ``members``
(bounded member readers, one gzip inflation budget per archive), ``sumocfg`` (config parsing and option checks), ``xmlrefs`` (includes,
file attributes, file params and schema locations of the loaded XML files),
``sumo_options`` (option table generated from the sumo binary by
``sumo_options_gen``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from .archive import ArchiveLimits, Scenario, extract_scenario, inspect_archive

__all__ = ["ScenarioError", "ArchiveLimits", "Scenario", "inspect_archive", "extract_scenario"]


def __getattr__(name: str):
    # Lazy re-export, so ``python -m core.scenario.sumo_options`` does not
    # import the table module twice (runpy warns about that).
    if name in ("ArchiveLimits", "Scenario", "inspect_archive", "extract_scenario"):
        from . import archive

        return getattr(archive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

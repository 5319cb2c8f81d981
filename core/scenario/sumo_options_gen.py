"""Generate :mod:`core.scenario.sumo_options` from the real ``sumo`` binary.

Run ``python -m core.scenario.sumo_options --generate`` (or this module) to
rewrite the table; ``--check`` only compares. ``sumo --save-template FILE``
writes every option with its section, type, default and synonyms; we turn
that into static sets so validation needs no binary at run time, and a unit
test regenerates the text and compares, so the table cannot drift from the
installed SUMO.

Classification rules (a FILE option must be matched by exactly one, otherwise
generation fails and a human has to decide, e.g. when SUMO adds an option):

* section ``gui_only`` -> ignored, except ``GUI_INPUT_OPTIONS``: sumo 1.28
  (the CLI, not only sumo-gui) refuses to start when ``gui-settings-file`` or
  ``alternative-net-file`` is missing, so those are input files (a unit test
  checks this set against the binary);
* section ``input`` or a name containing ``input`` -> input file;
* sections ``output`` and ``report`` or a name ending in ``output`` -> output
  file (``log`` included);
* anything else -> the explicit ``INPUT_OVERRIDES`` / ``OUTPUT_OVERRIDES`` /
  ``IGNORED_FILE_OPTIONS`` below. ``OUTPUT_OVERRIDES`` may also name STR
  options that are file names (``device.ssm.file``).

``SCHEMA_FILES`` lists the schemas sumo ships (``data/xsd`` beside the
binary, else ``$SUMO_HOME/data/xsd``): sumo maps a schema location containing
``/xsd/`` to that folder, so only those names are safe to accept.

This is developer tooling: it runs a subprocess and writes a file, which the
validation code itself never does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: FILE options outside the input section that SUMO *reads*.
INPUT_OVERRIDES: frozenset[str] = frozenset({
    "astar.all-distances",        # routing lookup table (marouter --all-pairs-output)
    "astar.landmark-distances",   # routing landmark table
    "phemlight-path",             # folder with PHEMlight emission definitions
    "device.fcd-replay.files",    # FCD trajectories to replay
})
#: gui_only FILE options that the sumo CLI nevertheless reads (verified by a unit test).
GUI_INPUT_OPTIONS: frozenset[str] = frozenset({"gui-settings-file", "alternative-net-file"})
#: FILE options outside the output/report sections that SUMO *writes*.
OUTPUT_OVERRIDES: frozenset[str] = frozenset({
    "save-configuration",         # writes the effective config (and exits)
    "save-template",              # writes an option template (and exits)
    "save-schema",                # writes an XSD (and exits)
    "device.ssm.file",            # STR option, but the SSM device output file
    "device.toc.file",            # STR option, but the ToC device output file
})
#: FILE options that are neither checked nor collected.
IGNORED_FILE_OPTIONS: frozenset[str] = frozenset({
    "configuration-file",         # the config itself; inside a config it has no effect
})
#: FILE options whose value is a prefix of generated names, validated but not listed as outputs.
PATH_PREFIX_OPTIONS: frozenset[str] = frozenset({"save-state.prefix"})
#: Non-file options whose value becomes part of output file names.
NAME_PART_OPTIONS: frozenset[str] = frozenset({"output-prefix", "output-suffix", "save-state.suffix"})
#: Sections whose options make sumo wait for (or serve) TraCI clients when not at their default.
TRACI_SECTIONS: frozenset[str] = frozenset({"traci_server"})
#: Options that make sumo connect to another program for the given values.
NETWORK_OPTIONS: dict[str, tuple[str, ...]] = {"pedestrian.model": ("remote",)}


@dataclass(frozen=True)
class OptionInfo:
    name: str
    section: str
    type: str
    default: str
    synonyms: tuple[str, ...]


def find_sumo() -> str:
    """``$SUMO_BINARY``, else the ``sumo`` next to this Python, else the one on PATH."""
    env = os.environ.get("SUMO_BINARY")
    if env:
        return env
    beside = pathlib.Path(sys.executable).with_name("sumo")
    if beside.exists():
        return str(beside)
    found = shutil.which("sumo")
    if not found:
        raise SystemExit("sumo binary not found; set SUMO_BINARY")
    return found


def read_template(sumo: str) -> tuple[str, list[OptionInfo]]:
    """Run ``sumo --save-template`` and return (version, options)."""
    version_out = subprocess.run([sumo, "--version"], capture_output=True, text=True, check=True,
                                 timeout=60).stdout
    match = re.search(r"sumo\s+(?:Version\s+)?v?(\d[\w.+-]*)", version_out)
    version = match.group(1) if match else "unknown"
    with tempfile.TemporaryDirectory() as tmp:
        target = pathlib.Path(tmp) / "template.xml"
        # Not --save-commented: its comments quote option names ("--x"), which
        # is invalid XML inside a comment; the plain template has a help= attribute.
        subprocess.run([sumo, "--save-template", str(target)],
                       capture_output=True, text=True, check=True, timeout=60)
        root = ET.parse(target).getroot()
    options = []
    for section in root:
        for opt in section:
            options.append(OptionInfo(
                name=opt.tag,
                section=section.tag,
                type=opt.get("type", ""),
                default=opt.get("value", ""),
                synonyms=tuple((opt.get("synonymes") or "").split()),
            ))
    return version, options


def schema_files(sumo: str) -> set[str]:
    """Paths (relative to ``data/xsd``) of the schemas shipped with ``sumo``."""
    candidates = [pathlib.Path(sumo).resolve().parent.parent / "data" / "xsd"]
    if os.environ.get("SUMO_HOME"):
        candidates.append(pathlib.Path(os.environ["SUMO_HOME"]) / "data" / "xsd")
    try:  # the eclipse-sumo wheel, whose bin/sumo beside python is only a launcher
        import sumo as wheel

        candidates.append(pathlib.Path(wheel.SUMO_HOME) / "data" / "xsd")
    except (ImportError, AttributeError):
        pass
    for folder in candidates:
        if folder.is_dir():
            return {p.relative_to(folder).as_posix() for p in folder.rglob("*.xsd")}
    raise SystemExit(f"no data/xsd folder found for {sumo}; set SUMO_HOME")


def classify(options: list[OptionInfo]) -> dict[str, object]:
    """Turn the option list into the sets of the table module."""
    names = {o.name for o in options}
    curated = (INPUT_OVERRIDES | OUTPUT_OVERRIDES | IGNORED_FILE_OPTIONS | PATH_PREFIX_OPTIONS
               | NAME_PART_OPTIONS | GUI_INPUT_OPTIONS | set(NETWORK_OPTIONS))
    unknown = sorted(curated - names)
    if unknown:
        raise SystemExit(f"curated option(s) no longer known to sumo: {', '.join(unknown)}")
    inputs, outputs, unclassified = set(), set(), []
    for o in options:
        if o.name in GUI_INPUT_OPTIONS:
            inputs.add(o.name)
            continue
        if o.name in OUTPUT_OVERRIDES:
            outputs.add(o.name)
            continue
        if o.type != "FILE" or o.section == "gui_only" or o.name in IGNORED_FILE_OPTIONS:
            continue
        if o.name in INPUT_OVERRIDES or o.section == "input" or "input" in o.name:
            inputs.add(o.name)
        elif o.name in PATH_PREFIX_OPTIONS or o.section in ("output", "report") \
                or o.name.endswith("output"):
            outputs.add(o.name)
        else:
            unclassified.append(f"{o.name} [{o.section}]")
    if unclassified:
        raise SystemExit("unclassified FILE option(s), extend the overrides in "
                         f"{__name__}: {', '.join(unclassified)}")
    synonyms = {}
    for o in options:
        for syn in o.synonyms:
            if syn not in names:
                synonyms[syn] = o.name
    return {
        "OPTION_TYPES": {o.name: o.type for o in options},
        "SYNONYMS": synonyms,
        "GUI_ONLY_OPTIONS": {o.name for o in options
                             if o.section == "gui_only" and o.name not in GUI_INPUT_OPTIONS},
        "INPUT_FILE_OPTIONS": inputs,
        "OUTPUT_FILE_OPTIONS": outputs,
        "PATH_PREFIX_OPTIONS": set(PATH_PREFIX_OPTIONS),
        "NAME_PART_OPTIONS": set(NAME_PART_OPTIONS),
        "TRACI_OPTIONS": {o.name: o.default for o in options if o.section in TRACI_SECTIONS},
        "NETWORK_OPTIONS": dict(NETWORK_OPTIONS),
        "VALIDATION_DEFAULTS": {o.name: o.default for o in options if o.name.startswith("xml-validation")},
    }


_HEADER = '''"""Static table of sumo's options, GENERATED from the sumo binary -- do not edit by hand.

Regenerate with ``python -m core.scenario.sumo_options --generate`` (see
:mod:`core.scenario.sumo_options_gen` for the classification rules); the
unit test ``test_scenario_sumo_options`` fails when this file no longer
matches the installed sumo.

* ``OPTION_TYPES``: every option name -> type (FILE, STR, INT, BOOL, TIME, ...)
* ``SYNONYMS``: alternative names and one-letter abbreviations -> option name
* ``GUI_ONLY_OPTIONS``: the ``gui_only`` options the sumo CLI ignores
* ``INPUT_FILE_OPTIONS``: files sumo reads; they must be in the archive
* ``OUTPUT_FILE_OPTIONS``: files sumo writes (including ``log``)
* ``PATH_PREFIX_OPTIONS``: output name prefixes (checked, not listed as outputs)
* ``NAME_PART_OPTIONS``: strings that become part of output file names
* ``TRACI_OPTIONS``: TraCI server options -> default; any other value waits for a client
* ``NETWORK_OPTIONS``: option -> values that make sumo connect to another program
* ``VALIDATION_DEFAULTS``: the ``xml-validation*`` options -> default scheme
* ``SCHEMA_FILES``: the schemas sumo ships (``data/xsd``), where it resolves ``.../xsd/NAME``
"""
'''


def _literal(value: object) -> str:
    if isinstance(value, set):
        if not value:
            return "frozenset()"
        return "frozenset({\n" + "".join(f"    {v!r},\n" for v in sorted(value)) + "})"
    if isinstance(value, dict):
        return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in sorted(value.items())) + "}"
    return repr(value)


def render(version: str, tables: dict[str, object]) -> str:
    """The full text of ``sumo_options.py``."""
    parts = [_HEADER, "\nfrom __future__ import annotations\n\n",
             f"SUMO_VERSION = {version!r}\n"]
    for name, value in tables.items():
        parts.append(f"\n{name} = {_literal(value)}\n")
    parts.append(
        '\n\nif __name__ == "__main__":  # pragma: no cover - developer tooling\n'
        "    from core.scenario.sumo_options_gen import main\n\n"
        "    raise SystemExit(main())\n"
    )
    return "".join(parts)


def generate(sumo: str | None = None) -> str:
    """Text of the table module for the given (or discovered) sumo binary."""
    sumo = sumo or find_sumo()
    version, options = read_template(sumo)
    tables = classify(options)
    tables["SCHEMA_FILES"] = schema_files(sumo)
    return render(version, tables)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="rewrite sumo_options.py")
    parser.add_argument("--check", action="store_true", help="exit 1 if sumo_options.py is stale")
    parser.add_argument("--sumo", help="path of the sumo binary")
    args = parser.parse_args(argv)
    target = pathlib.Path(__file__).with_name("sumo_options.py")
    text = generate(args.sumo)
    if args.generate:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
        return 0
    if args.check:
        same = target.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{target} is stale; run with --generate")
        return 0 if same else 1
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Read a ``.sumocfg`` the way SUMO does and classify what it asks for.

SUMO's ``OptionsLoader`` (src/utils/options/OptionsLoader.cpp) takes every
element below the root whose ``value`` (or short ``v``) attribute is
non-empty and sets the option named by the element tag (element text is also
taken, but sumo 1.28 then fails with "attribute 'value' is missing", so we
refuse it); section elements (``<input>``, ``<output>``, ``<report>``, ...) carry no
value and are just grouping, options directly under the root work too. File
lists are split at ``,`` and each item is trimmed; relative names are taken
relative to the config file's directory and URL-decoded. An unknown option
name makes SUMO refuse the config, so we refuse it up front (which also means
no synonym can sneak an output past the checks).

The option classification comes from :mod:`core.scenario.sumo_options`, a
table generated from the real ``sumo`` binary. Checks:

* no option value may use ``${VAR}`` or a leading ``~``: sumo expands both in
  every option of a config (an unset variable to nothing, so
  ``${UNSET}/tmp/x`` is ``/tmp/x``, and ``${SECRET}.xml`` puts a secret in a
  file name);
* every input file (``net-file``, ``route-files``, ``additional-files``, ...)
  must exist in the archive, inside the scenario folder, except the
  ``phemlight-path`` folder: sumo searches it, then ``$PHEMLIGHT_PATH``, then
  ``$SUMO_HOME/data/emissions/PHEMlight/`` (``PHEMlight5/`` for PHEMlight5
  classes), so a folder the archive lacks is not an error (its path is still
  checked);
* outputs must be relative paths inside the scenario folder and not
  ``host:port`` sockets; their normalized paths are collected;
* options that make SUMO wait for a TraCI client must keep their defaults;
* ``gui_only`` options are ignored like sumo does, except the two sumo 1.28
  still reads (``gui-settings-file``, ``alternative-net-file``), which are
  input files like the others;
* ``threads`` and ``device.rerouting.threads`` may not exceed the job's
  ``cpu_request`` (when the caller passes it as ``max_threads``);
* the XML inputs sumo parses (network, route, additional, weight, state and
  FCD-replay files) are handed to :mod:`core.scenario.xmlrefs`, which follows
  their includes and checks their file attributes, file params and schema
  locations; schema locations of the config itself are checked here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import IO, Callable

from . import sumo_options as table
from .errors import ScenarioError
from .paths import expansion_problem, resolve_reference
from .xmlrefs import Root, check_schema_hints, path_refusal, scan_inputs
from .xmlsafe import Element, parse_document

__all__ = ["ConfigOption", "ConfigAnalysis", "read_options", "analyze_config"]

CONFIG_ROOTS = ("configuration", "sumoConfiguration")
#: XML inputs sumo parses with its generic handler -> the option choosing their schema validation.
SCANNED_INPUT_OPTIONS = {
    "net-file": "xml-validation.net",
    "alternative-net-file": "xml-validation.net",
    "route-files": "xml-validation.routes",
    "additional-files": "xml-validation",
    "weight-files": "xml-validation",
    "load-state": "xml-validation",
    "device.fcd-replay.files": "xml-validation",
}
#: Binary saved states (``--save-state.files x.sbx``) are not XML.
BINARY_STATE_SUFFIX = ".sbx"
#: Folders sumo searches with fallbacks to its own data: a missing one is not an error.
SEARCH_PATH_OPTIONS = frozenset({"phemlight-path"})
#: Options that start threads; at most the job's cpu_request.
THREAD_OPTIONS = ("threads", "device.rerouting.threads")


@dataclass(frozen=True)
class ConfigOption:
    """One option set by the config file."""

    given: str  # the element name as written (may be a synonym)
    name: str  # canonical SUMO option name
    value: str
    line: int

    @property
    def label(self) -> str:
        """How to name the option in messages."""
        return self.given if self.given == self.name else f"{self.given} ({self.name})"


@dataclass(frozen=True)
class ConfigAnalysis:
    """What the config reads and writes, normalized relative to the scenario root."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    log_file: str | None


def _canonical(name: str) -> str | None:
    if name in table.OPTION_TYPES:
        return name
    return table.SYNONYMS.get(name)


def read_options(root: Element, label: str) -> list[ConfigOption]:
    """Extract the options of a parsed config like SUMO's ``OptionsLoader``."""
    if root.tag not in CONFIG_ROOTS:
        raise ScenarioError(
            f"{label}: root element must be <configuration> or <sumoConfiguration>, found <{root.tag}>"
        )
    options: list[ConfigOption] = []
    seen: dict[str, ConfigOption] = {}
    for el in root.iter():
        if el is root:
            continue
        values = [el.attrib[k] for k in ("value", "v") if el.attrib.get(k, "") != ""]
        if not values and not el.children and el.text.strip():
            # sumo 1.28 takes the text but then fails: "attribute 'value' is missing".
            raise ScenarioError(
                f"{label}: option '{el.tag}' (line {el.line}) gives its value as element text; "
                "write it as value=\"...\""
            )
        if not values:
            continue  # a section element or an empty option (SUMO ignores empty values)
        name = _canonical(el.tag)
        if name is None:
            raise ScenarioError(
                f"{label}: unknown option '{el.tag}' (line {el.line}); "
                f"sumo {table.SUMO_VERSION} has no such option"
            )
        if len(values) > 1 or name in seen:
            raise ScenarioError(f"{label}: option '{el.tag}' is set more than once (line {el.line})")
        opt = ConfigOption(el.tag, name, values[0], el.line)
        seen[name] = opt
        options.append(opt)
    return options


def _split(opt: ConfigOption, label: str) -> list[str]:
    """SUMO file lists: split at ',' and trim each item; sumo fails on empty items."""
    items = [item.strip() for item in opt.value.split(",")]
    if any(not item for item in items):
        raise ScenarioError(
            f"option {opt.label} in {label} has an empty file name in its list ({opt.value!r})"
        )
    return items


def _exists(path: str, files: frozenset[str]) -> bool:
    if path in files:
        return True
    prefix = path.rstrip("/") + "/"
    return any(f.startswith(prefix) for f in files)  # a folder option such as phemlight-path


def _check_name_part(opt: ConfigOption, label: str) -> None:
    """Options whose value becomes part of output file names (output-prefix ...)."""
    v = opt.value
    if any(c in v for c in "/\\:") or "%" in v:
        raise ScenarioError(
            f"option {opt.label} in {label} must be a plain file name part without "
            f"'/', '\\', ':' or '%' ({v}), which is not allowed"
        )
    if "TIME" in v:
        raise ScenarioError(
            f"option {opt.label} in {label} uses TIME ({v}), which makes output file names "
            "unpredictable and is not allowed"
        )


def _with_affixes(path: str, prefix: str, suffix: str) -> str:
    """Apply output-prefix (before the file name) and output-suffix (before its extension)."""
    head, tail = posixpath.split(path)
    if suffix:
        stem, dot, ext = tail.rpartition(".")
        tail = f"{stem}{suffix}.{ext}" if dot and stem else tail + suffix
    tail = prefix + tail
    return posixpath.join(head, tail) if head else tail


def _input_paths(opt: ConfigOption, label: str, base_dir: str,
                 files: frozenset[str]) -> tuple[list[str], list[str]]:
    """(present, missing) normalized paths of an input option; refuses paths leaving the root."""
    found, not_found = [], []
    for item in _split(opt, label):
        path, problem = resolve_reference(item, base_dir)
        if path is None:
            raise path_refusal(problem or "absolute", f"option {opt.label}", item, writing=False)
        (found if _exists(path, files) else not_found).append(path)
    return found, not_found


def _output_paths(opt: ConfigOption, label: str, base_dir: str) -> list[str]:
    """Normalized paths an output option writes; refuses sockets and paths leaving the root."""
    paths = []
    for item in _split(opt, label):
        path, problem = resolve_reference(item, base_dir)
        if problem == "device":
            continue  # stdout/stderr/nul are not files
        if path is None:
            raise path_refusal(problem or "absolute", f"option {opt.label}", item, writing=True)
        paths.append(path)
    return paths


def _check_threads(opt: ConfigOption, label: str, max_threads: int | None) -> None:
    if max_threads is None or opt.name not in THREAD_OPTIONS:
        return
    try:
        wanted = int(opt.value.strip())
    except ValueError:
        return  # sumo refuses it itself ("cannot be converted")
    if wanted > max_threads:
        raise ScenarioError(
            f"{label}: option {opt.label} (line {opt.line}) asks for {wanted} threads, more than the "
            f"job's cpu_request of {max_threads}; raise cpu_request or lower {opt.given}"
        )


def _validated(options: list[ConfigOption], option: str) -> bool:
    """Whether sumo validates the inputs governed by ``option`` (and so opens their schema locations)."""
    value = next((o.value for o in options if o.name == option), table.VALIDATION_DEFAULTS[option])
    return value.strip() != "never"


def analyze_config(
    data: bytes,
    config_path: str,
    files: frozenset[str],
    open_member: Callable[[str], IO[bytes]] | None = None,
    max_threads: int | None = None,
) -> ConfigAnalysis:
    """Check the config ``data`` (found at ``config_path`` in the scenario) against ``files``.

    ``open_member(relpath)`` gives a bounded stream of an archive member; it is
    used to scan the XML inputs and may be None to skip that scan.
    ``max_threads`` bounds the thread options (None: no bound).
    """
    label = config_path
    root = parse_document(data, label)
    options = read_options(root, label)
    base_dir = posixpath.dirname(config_path)
    for el in root.iter():
        if el.attrib:
            check_schema_hints(el.attrib, f"element <{el.tag}> (line {el.line}) of {label}", base_dir)

    inputs: list[str] = []
    missing: list[str] = []
    outputs: list[str] = []
    log_file: str | None = None
    prefix = suffix = ""
    scanned: list[Root] = []

    for opt in options:
        problem = expansion_problem(opt.value)
        if problem:
            raise ScenarioError(
                f"{label}: option {opt.label} (line {opt.line}) uses {problem}, which is not allowed"
            )
        if opt.name in table.GUI_ONLY_OPTIONS:
            continue
        who = f"option {opt.label}"
        _check_threads(opt, label, max_threads)
        if opt.name in table.TRACI_OPTIONS and opt.value.strip() != table.TRACI_OPTIONS[opt.name]:
            raise ScenarioError(
                f"{who} makes SUMO wait for a TraCI client ({opt.value}), which is not allowed"
            )
        if opt.name in table.NETWORK_OPTIONS and opt.value.strip() in table.NETWORK_OPTIONS[opt.name]:
            raise ScenarioError(
                f"{who} makes SUMO connect to an external program ({opt.value}), which is not allowed"
            )
        if opt.name in table.NAME_PART_OPTIONS:
            _check_name_part(opt, label)
            if opt.name == "output-prefix":
                prefix = opt.value
            elif opt.name == "output-suffix":
                suffix = opt.value
        if opt.name in table.INPUT_FILE_OPTIONS:
            found, not_found = _input_paths(opt, label, base_dir, files)
            inputs += found
            if opt.name in SCANNED_INPUT_OPTIONS:
                schemas = _validated(options, SCANNED_INPUT_OPTIONS[opt.name])
                scanned += [Root(p, schemas) for p in found
                            if p in files and not p.endswith(BINARY_STATE_SUFFIX)]
            if not_found and opt.name not in SEARCH_PATH_OPTIONS:
                missing.append(f"{opt.label}: {', '.join(not_found)}")
        elif opt.name in table.OUTPUT_FILE_OPTIONS:
            paths = _output_paths(opt, label, base_dir)
            if opt.name == "log":
                log_file = paths[-1] if paths else None
            elif opt.name not in table.PATH_PREFIX_OPTIONS:
                outputs += paths
    if missing:
        raise ScenarioError(f"missing file(s) referenced by {label}: {'; '.join(missing)}")
    if prefix or suffix:  # sumo applies both to every output device, the log included
        outputs = [_with_affixes(p, prefix, suffix) for p in outputs]
        log_file = _with_affixes(log_file, prefix, suffix) if log_file else None
    if open_member is not None:
        scan_inputs(scanned, files, open_member, base_dir)
    return ConfigAnalysis(
        inputs=tuple(dict.fromkeys(inputs)),
        outputs=tuple(dict.fromkeys(outputs)),
        log_file=log_file,
    )

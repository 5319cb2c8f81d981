"""Check what the XML files SUMO loads point at: includes, file attributes, file params, schemas.

SUMO reads more than the files a ``.sumocfg`` names. Every file it parses
with its generic SAX handler (network, route, additional, weight, state,
FCD-replay files and the ``variableSpeedSign``/``rerouter`` definition files
they name) follows ``<include href="..."/>``, resolved relative to the
including file and not expanded. Elements of those files write outputs named
by attributes (``file``, ``output``, ``dest``, ``href``), relative to the
file and passed through ``substituteEnvironment`` (``${VAR}``, a leading
``~``). Vehicles and types take device outputs from ``<param key=...>``
(``device.ssm.file``, ``device.toc.file``...), relative to sumo's working
directory (the config's folder). With schema validation on (sumo's default
for all but the network), Xerces opens what ``xsi:schemaLocation`` /
``xsi:noNamespaceSchemaLocation`` name: a URL containing ``/xsd/`` is mapped
to ``$SUMO_HOME/data/xsd/...`` and anything else is fetched or opened as is
(the web, any local file). A ``vType``'s ``emissionClass="PHEMlight/NAME"``
makes sumo open ``<phemlight path>/NAME.PHEMLight.veh`` (and its ``.csv``
tables), so a NAME with ``/`` or ``..`` reads files anywhere on the host.

:func:`scan_inputs` walks all of it with an explicit work list (no
recursion, each file once, include cycles refused: sumo crashes on them) and
refuses, naming file, line, element and attribute: paths that are absolute,
sockets, devices where a file is read, or leave the scenario; ``${`` and a
leading ``~``; included files missing from the archive; schema locations that
are neither a SUMO schema nor a scenario file; emission class names that are
paths.
"""

from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass
from typing import IO, Callable

from . import sumo_options as table
from .errors import ScenarioError
from .paths import expansion_problem, resolve_reference
from .xmlsafe import Watch, scan_elements

__all__ = ["FILE_ATTRIBUTES", "INPUT_FILE_TAGS", "Root", "scan_inputs", "is_file_param", "check_schema_hints",
           "path_refusal"]

#: Attributes of loaded elements that name files (detector outputs, timed events, includes).
FILE_ATTRIBUTES = frozenset({"file", "href", "output", "dest"})
#: Elements whose ``file`` attribute is a definition file sumo reads (and parses, includes and all).
INPUT_FILE_TAGS = frozenset({"variableSpeedSign", "rerouter"})
INCLUDE_TAG = "include"
#: The vType attribute naming an emission class, "MODEL/NAME"; PHEMlight models open NAME as a file.
EMISSION_ATTRIBUTE = "emissionClass"
PARAM_TAG = "param"
SCHEMA_ATTRIBUTES = ("noNamespaceSchemaLocation", "schemaLocation")

#: Param keys that name files: sumo's FILE options (and the STR ones that are file names).
_FILE_KEYS = frozenset(name for name, kind in table.OPTION_TYPES.items() if kind == "FILE") \
    | table.INPUT_FILE_OPTIONS | table.OUTPUT_FILE_OPTIONS
#: Byte pieces of which every file key without "file" or "output" in its name contains one
#: (checked by a unit test against _FILE_KEYS), searched only in pieces holding "<param".
KEY_NEEDLES = (b"log", b"astar", b"-state", b"netstate", b"save-", b"jupedsim", b"phemlight")
#: Every element :func:`scan_inputs` must see has one of these in its bytes; '&' for character
#: references, which could spell a file attribute's value or a param key.
WATCH = Watch(
    attrs=FILE_ATTRIBUTES | {EMISSION_ATTRIBUTE},
    tags=frozenset({INCLUDE_TAG, PARAM_TAG}),
    suffixes=SCHEMA_ATTRIBUTES,
    needles=(b"file", b"href", b"output", b"dest", b"&", b"emissionClass"),
    gated=(b"<param", KEY_NEEDLES),
    suffix_needles=(b"chemaLocation",),
)


@dataclass(frozen=True)
class Root:
    """A file sumo loads because the config names it."""

    path: str  # normalized, relative to the scenario root, present in the archive
    schemas: bool  # whether sumo validates it (Xerces then opens its schema locations)


def is_file_param(key: str) -> bool:
    """Whether a ``<param key=...>`` names a file: a FILE option of sumo or a key ending in ``.file``/``output``."""
    return key in _FILE_KEYS or key.endswith((".file", "output"))


def path_refusal(problem: str, who: str, value: str, writing: bool) -> ScenarioError:
    """The refusal for a path ``resolve_reference`` rejected with ``problem``."""
    verb = "writes to" if writing else "refers to"
    kind = {
        "socket": "a network socket",
        "escapes": "a path outside the scenario folder",
        "device": "a device instead of a file",
        "empty": "an empty file name",
    }.get(problem, "an absolute path")
    return ScenarioError(f"{who} {verb} {kind} ({value}), which is not allowed")


def _expansion_refusal(who: str, value: str) -> ScenarioError | None:
    problem = expansion_problem(value)
    if problem is None:
        return None
    return ScenarioError(f"{who} uses {problem}, which is not allowed")


def _schema_uris(name: str, value: str) -> list[str]:
    tokens = value.split()
    if name.endswith("noNamespaceSchemaLocation"):
        return tokens
    return tokens[1::2]  # schemaLocation: namespace URI, location, namespace URI, location...


def check_schema_hints(attrs: dict[str, str], who: str, base_dir: str) -> None:
    """Refuse schema locations Xerces would fetch from the web or open outside the scenario.

    Accepted: a URI whose part from the first ``/xsd/`` on names a schema
    sumo ships (``http://sumo.dlr.de/xsd/net_file.xsd``), or a relative path
    inside the scenario.
    """
    for name, value in attrs.items():
        if not name.endswith(SCHEMA_ATTRIBUTES) or ":" not in name:
            continue
        for uri in _schema_uris(name, value):
            pos = uri.find("/xsd/")
            if pos >= 0:
                if uri[pos + len("/xsd/"):] in table.SCHEMA_FILES:
                    continue
            elif expansion_problem(uri) is None and resolve_reference(uri, base_dir, decode=False)[0]:
                continue
            raise ScenarioError(
                f"{who}: attribute {name} names the schema {uri!r}, which is neither a schema of "
                f"sumo {table.SUMO_VERSION} (.../xsd/NAME.xsd) nor a file of the scenario; "
                "sumo would fetch or open it, which is not allowed"
            )


class _Scanner:
    """State of one :func:`scan_inputs` run."""

    def __init__(self, files: frozenset[str], open_member: Callable[[str], IO[bytes]], cwd: str) -> None:
        self.files = files
        self.open_member = open_member
        self.cwd = cwd
        self.queue: deque[tuple[str, bool]] = deque()
        self.queued: set[tuple[str, bool]] = set()
        self.done: dict[str, bool] = {}  # path -> scanned with schema checks
        self.includes: dict[str, dict[str, None]] = {}  # path -> included paths (ordered set)

    def add(self, path: str, schemas: bool) -> None:
        if (path, schemas) not in self.queued:
            self.queued.add((path, schemas))
            self.queue.append((path, schemas))

    def run(self) -> None:
        while self.queue:
            path, schemas = self.queue.popleft()
            previous = self.done.get(path)
            if previous is not None and (previous or not schemas):
                continue  # each file once (twice when it is found validated after unvalidated)
            self.done[path] = schemas
            self.scan(path, schemas)
        self.refuse_cycles()

    def scan(self, path: str, schemas: bool) -> None:
        base_dir = posixpath.dirname(path)
        edges = self.includes.setdefault(path, {})

        def on_element(tag: str, attrs: dict[str, str], line: int) -> None:
            who = f"element <{tag}> (line {line}) of {path}"
            if schemas:
                check_schema_hints(attrs, who, base_dir)
            for attr in sorted(FILE_ATTRIBUTES.intersection(attrs)):  # sorted: the same error each time
                value = attrs[attr]
                if not value:
                    continue
                reads = tag == INCLUDE_TAG and attr == "href" or tag in INPUT_FILE_TAGS and attr == "file"
                label = f"{who}: attribute {attr}"
                refusal = _expansion_refusal(label, value)
                if refusal:
                    raise refusal
                resolved, problem = resolve_reference(value, base_dir, decode=False)
                if problem == "device" and reads:  # sumo reads a file of that name next to this one
                    resolved, problem = posixpath.normpath(posixpath.join(base_dir, value)), None
                if resolved is None:
                    if problem in ("empty", "device"):
                        continue
                    raise path_refusal(problem or "absolute", label, value, writing=not reads)
                if tag == INCLUDE_TAG and attr == "href":
                    if resolved not in self.files:
                        raise ScenarioError(
                            f"{who} includes {value}, which is not in the archive (looked for {resolved})"
                        )
                    edges[resolved] = None
                    self.add(resolved, schemas)
                elif reads and resolved in self.files:
                    self.add(resolved, schemas)
            emission = attrs.get(EMISSION_ATTRIBUTE)
            if emission:
                name = emission.partition("/")[2]
                if "/" in name or "\\" in name or ".." in name:
                    raise ScenarioError(
                        f"{who}: attribute {EMISSION_ATTRIBUTE} ({emission}) is a path; sumo would open "
                        "emission data outside its data folders, which is not allowed"
                    )
            if tag == PARAM_TAG:
                key = attrs.get("key", "")
                value = attrs.get("value", "")
                if value and is_file_param(key):
                    label = f"element <param key=\"{key}\"> (line {line}) of {path}: value"
                    refusal = _expansion_refusal(label, value)
                    if refusal:
                        raise refusal
                    resolved, problem = resolve_reference(value, self.cwd, decode=False)
                    if resolved is None and problem not in ("empty", "device"):
                        raise path_refusal(problem or "absolute", label, value, writing=True)

        stream = self.open_member(path)
        try:
            scan_elements(stream, path, on_element, WATCH)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()

    def refuse_cycles(self) -> None:
        """Iterative depth-first search over the include graph; a back edge is a cycle."""
        state: dict[str, int] = {}  # 1 on the current path, 2 finished
        for start in self.includes:
            if state.get(start):
                continue
            path = [start]
            iters = [iter(self.includes.get(start, ()))]
            state[start] = 1
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    iters.pop()
                    continue
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise ScenarioError(
                        f"{cycle[0]} includes itself ({' -> '.join(cycle)}); sumo cannot load an "
                        "include cycle"
                    )
                if not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    iters.append(iter(self.includes.get(nxt, ())))


def scan_inputs(roots: list[Root], files: frozenset[str], open_member: Callable[[str], IO[bytes]],
                cwd: str) -> None:
    """Scan ``roots`` and every file they include; ``cwd`` is sumo's working directory (the config's folder)."""
    scanner = _Scanner(files, open_member, cwd)
    for root in roots:
        scanner.add(root.path, root.schemas)
    scanner.run()

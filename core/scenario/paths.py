"""Pure string checks for paths: ZIP entry names and file names inside SUMO options.

Why a module of its own: the same questions ("is this absolute?", "does it
climb out with ``..``?", "would SUMO treat it as a network socket?") are asked
about archive entry names, about option values of the ``.sumocfg`` and about
``file=`` attributes of additional files. Nothing here touches the file system.

SUMO's own rules (``src/utils/common/FileHelpers.cpp``) that we mirror:

* ``isSocket(name)``: a ``:`` at index > 1 means ``host:port`` and the output is
  sent over TCP instead of being written to a file;
* ``isAbsolute(name)``: a socket, a leading ``/`` or ``\\``, a drive letter
  (``:`` at index 1) or ``nul``/``NUL``;
* ``stdout``/``STDOUT``/``-``, ``stderr``/``STDERR`` and ``nul``/``NUL``
  (``/dev/null``) are device names, not files;
* relative names are taken relative to the configuration file's directory and
  then URL-decoded (``OptionsCont::relocateFiles``), so ``%2e%2e/x`` is ``../x``;
  file attributes of loaded XML files (``file=``, ``href=``) are not decoded;
* ``StringUtils::substituteEnvironment`` runs over every option value and over
  every output file name: ``${NAME}`` becomes the variable's value (nothing when
  unset, so ``${UNSET}/tmp/x`` is ``/tmp/x``), and a ``~`` at the start of the
  value or right after a ``,`` becomes ``${HOME}``. ``$NAME`` without braces is
  left alone. :func:`expansion_problem` names either form.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse

__all__ = [
    "DEVICE_NAMES",
    "expansion_problem",
    "is_junk",
    "normalize_entry_name",
    "resolve_reference",
    "sumo_is_socket",
    "url_decode",
]

#: SUMO output "files" that are really standard streams or the null device.
DEVICE_NAMES = frozenset({"stdout", "STDOUT", "-", "stderr", "STDERR", "nul", "NUL", "/dev/null"})

#: Basenames that archivers add and that are never part of a scenario.
_JUNK_BASENAMES = frozenset({".DS_Store", "Thumbs.db"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_junk(name: str) -> bool:
    """True for macOS/Windows archiver litter: ``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``._*``."""
    parts = name.split("/")
    if "__MACOSX" in parts:
        return True
    base = parts[-1]
    return base in _JUNK_BASENAMES or base.startswith("._")


def normalize_entry_name(raw: str) -> str | None:
    """Return the safe, normalized posix form of a ZIP entry name, or None if it is unsafe.

    Refused (None): empty names, NUL or other control characters, backslashes
    (Windows separators would be interpreted differently by different
    extractors), absolute paths, drive letters and any ``..`` component.
    ``.`` components and repeated slashes are dropped; a trailing ``/`` (a
    directory entry) is kept so callers can tell directories apart.
    """
    if not raw or _CONTROL.search(raw):
        return None
    if "\\" in raw or raw.startswith("/") or _DRIVE.match(raw):
        return None
    is_dir = raw.endswith("/")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts) + ("/" if is_dir else "")


def sumo_is_socket(value: str) -> bool:
    """SUMO's ``FileHelpers::isSocket``: a colon at index > 1 (``host:port``)."""
    pos = value.find(":")
    return pos > 1


def url_decode(value: str) -> str:
    """URL-decode like SUMO does for file options (``%xx`` escapes; ``+`` stays ``+``)."""
    return urllib.parse.unquote(value, errors="strict") if "%" in value else value


def expansion_problem(value: str) -> str | None:
    """What SUMO's ``substituteEnvironment`` would expand in ``value``, or None.

    ``'${...} (environment expansion)'`` for any ``${`` (also an unclosed one:
    refusing it costs nothing and keeps the rule simple) and
    ``'~ (home directory expansion)'`` for a ``~`` at the start or after ``,``.
    """
    if "${" in value:
        return "${...} (environment expansion)"
    if value.startswith("~") or ",~" in value:
        return "~ (home directory expansion)"
    return None


def resolve_reference(value: str, base_dir: str, decode: bool = True) -> tuple[str | None, str | None]:
    """Resolve one file name found in a config or additional file.

    ``base_dir`` is the directory (posix, relative to the scenario root, '' for
    the root) of the file that contains the reference. Returns
    ``(normalized_path, None)`` on success or ``(None, problem)`` where
    ``problem`` is one of ``'socket'``, ``'absolute'``, ``'escapes'``,
    ``'device'``, ``'empty'``. Both the raw and the URL-decoded form are checked, since SUMO
    decodes after deciding relativity (and both are refused alike); with
    ``decode=False`` (attributes of loaded XML files, which SUMO takes
    literally) the returned path is the raw one.
    """
    try:
        decoded = url_decode(value)
    except (UnicodeDecodeError, ValueError):
        decoded = value
    forms = (value, decoded)
    for form in forms:
        if sumo_is_socket(form):
            return None, "socket"
    for form in forms:
        if form in DEVICE_NAMES:
            return None, "device"
    for form in forms:
        if form.startswith(("/", "\\")) or _DRIVE.match(form) or "\x00" in form:
            return None, "absolute"
    joined = None
    for form in forms:
        # SUMO splits on both separators; treat '\' as '/' for the escape test.
        form = form.replace("\\", "/")
        if not form.strip():
            return None, "empty"
        normal = posixpath.normpath(posixpath.join(base_dir, form))
        if normal in (".", "..") or normal.startswith("../"):
            return None, "escapes"
        joined = normal if joined is None else joined
    if decode:
        joined = posixpath.normpath(posixpath.join(base_dir, decoded.replace("\\", "/")))
    return joined, None

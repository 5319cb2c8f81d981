"""ZIP safety: decide from the central directory whether an upload is acceptable.

``inspect_archive`` never extracts anything. It reads the ZIP central
directory (cheap, even for a bomb), refuses unsafe entry names, symlinks,
encrypted entries and anything that looks like a decompression bomb, drops
archiver litter, strips a single top-level folder, picks the ``.sumocfg`` and
hands the config to :mod:`core.scenario.sumocfg` for the SUMO-level checks.
The only bytes it decompresses are the config itself and the XML inputs sumo
parses (network, routes, additional files and what they include), bounded by
the declared, already-checked sizes (:mod:`core.scenario.members`).
Gzip-compressed inputs (``.xml.gz``, as real-world scenarios ship their
networks) are inflated on the fly, and every inflated byte of every scanned
member counts against ONE budget of ``max_uncompressed_bytes`` per archive
(413 beyond).

``extract_scenario`` writes exactly the accepted files, streaming and
re-counting bytes, so a header that lies about sizes cannot make us write more
than was declared and checked.

Ratio floor: a compression ratio is only meaningful for entries that are not
tiny (1 KiB of zeros legitimately deflates 100x and more). We therefore
compare the uncompressed size against ``max_ratio * max(compressed,
RATIO_FLOOR_BYTES)``: an entry compressed to less than 4 KiB may expand to
``4 KiB * max_ratio`` without being called a bomb, and anything larger is
measured by its real ratio. The same rule applies to the archive as a whole.
The absolute cap ``max_uncompressed_bytes`` still bounds the total.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from .errors import ScenarioError
from .members import BoundedReader, InflationBudget, XmlMemberReader, read_member
from .members import open_member as open_member_of
from .paths import is_junk, normalize_entry_name
from .sumocfg import analyze_config

__all__ = [
    "ArchiveLimits", "Scenario", "inspect_archive", "extract_scenario",
    "RATIO_FLOOR_BYTES", "CONFIG_MAX_BYTES",
]

#: Below this compressed size an entry's ratio is not held against it (see module docstring).
RATIO_FLOOR_BYTES = 4096
#: A .sumocfg is a few KiB; it is parsed into memory, so it gets its own small cap.
CONFIG_MAX_BYTES = 1 << 20

_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


@dataclass(frozen=True)
class ArchiveLimits:
    """Upper bounds applied to an upload before anything is extracted."""

    max_uncompressed_bytes: int
    max_entries: int
    max_ratio: int  # max uncompressed/compressed per entry and for the whole archive


@dataclass(frozen=True)
class Scenario:
    """What ``inspect_archive`` accepted; everything is relative to ``root``."""

    root: str  # single top-level folder that was stripped, with trailing '/', or ''
    config_file: str  # chosen .sumocfg, relative to root (posix path)
    files: tuple[str, ...]  # every kept entry relative to root, sorted
    uncompressed_size: int  # sum over kept files
    outputs: tuple[str, ...]  # output files the config names, normalized relative to root
    log_file: str | None  # the config's `log` option, normalized relative to root, or None


# --------------------------------------------------------------------------- opening


def _open_zip(path: pathlib.Path | BinaryIO, limits: ArchiveLimits | None = None) -> zipfile.ZipFile:
    """Open ``path`` (or a seekable binary file) as a ZIP, mapping every parse failure to a 400 refusal.

    When ``limits`` is given, the entry count of the end-of-central-directory
    record is checked *before* zipfile parses the whole central directory, so
    an archive announcing millions of entries is refused without reading them.
    """
    try:
        if limits is not None:
            declared = _declared_entry_count(path)
            if declared is not None and declared > limits.max_entries:
                raise ScenarioError(
                    f"archive has {declared} entries, more than the limit of {limits.max_entries}", 413
                )
        return zipfile.ZipFile(path)
    except ScenarioError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError,
            UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EACCES, errno.EISDIR):
            raise  # our own bug (wrong path), not the tenant's upload
        raise ScenarioError(f"the upload is not a valid ZIP archive ({exc})", 400) from None


def _declared_entry_count(path: pathlib.Path | BinaryIO) -> int | None:
    """Total entry count from the end-of-central-directory record, or None if unavailable."""
    end_rec = getattr(zipfile, "_EndRecData", None)
    index = getattr(zipfile, "_ECD_ENTRIES_TOTAL", None)
    if end_rec is None or index is None:  # pragma: no cover - private API moved
        return None
    if hasattr(path, "read"):
        path.seek(0)
        rec = end_rec(path)
    else:
        with open(path, "rb") as fp:
            rec = end_rec(fp)
    if not rec:
        raise zipfile.BadZipFile("File is not a zip file")
    return int(rec[index])


# --------------------------------------------------------------------------- entry checks


def _entry_name(info: zipfile.ZipInfo) -> str:
    """Validated, normalized name of an entry (trailing '/' for directories)."""
    raw = info.orig_filename
    normalized = normalize_entry_name(raw)
    if normalized is None:
        raise ScenarioError(
            f"unsafe entry name {raw!r}: absolute paths, '..' components, backslashes, "
            "drive letters and control characters are not allowed"
        )
    return normalized


def _check_entry(info: zipfile.ZipInfo, name: str) -> None:
    """Refuse symlinks, encrypted entries and compression methods we cannot read."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ScenarioError(f"entry {name!r} is a symbolic link; symlinks are not allowed")
    if info.flag_bits & 0x1 or info.flag_bits & 0x40:
        raise ScenarioError(f"entry {name!r} is encrypted; encrypted archives are not supported")
    if not name.endswith("/") and info.compress_type not in _SUPPORTED_METHODS:
        raise ScenarioError(
            f"entry {name!r} uses an unsupported compression method ({info.compress_type}); "
            "use deflate, bzip2, lzma or no compression"
        )


def _too_expansive(uncompressed: int, compressed: int, max_ratio: int) -> bool:
    return uncompressed > max_ratio * max(compressed, RATIO_FLOOR_BYTES)


def _check_sizes(entries: list[tuple[str, zipfile.ZipInfo]], limits: ArchiveLimits) -> None:
    """Zip-bomb checks on declared sizes, per entry and in total (413)."""
    total_u = total_c = 0
    for name, info in entries:
        if _too_expansive(info.file_size, info.compress_size, limits.max_ratio):
            raise ScenarioError(
                f"entry {name!r} expands from {info.compress_size} to {info.file_size} bytes, "
                f"more than the allowed compression ratio of {limits.max_ratio}", 413
            )
        total_u += info.file_size
        total_c += info.compress_size
    if total_u > limits.max_uncompressed_bytes:
        raise ScenarioError(
            f"archive expands to {total_u} bytes, more than the limit of "
            f"{limits.max_uncompressed_bytes} bytes", 413
        )
    if _too_expansive(total_u, total_c, limits.max_ratio):
        raise ScenarioError(
            f"archive expands from {total_c} to {total_u} bytes, more than the allowed "
            f"compression ratio of {limits.max_ratio}", 413
        )


def _check_overlap(entries: list[tuple[str, zipfile.ZipInfo]]) -> None:
    """Refuse entries whose data overlaps (the "overlapping files" bomb construction).

    The local header of an entry is at least 30 bytes plus its name; if even
    that lower bound plus the compressed size runs into the next entry's
    header, two entries share bytes.
    """
    ordered = sorted(entries, key=lambda e: e[1].header_offset)
    for (name, info), (next_name, nxt) in zip(ordered, ordered[1:]):
        end = info.header_offset + 30 + _raw_name_length(info) \
            + info.compress_size
        if end > nxt.header_offset:
            raise ScenarioError(
                f"entries {name!r} and {next_name!r} overlap inside the archive "
                "(a zip-bomb construction)", 413
            )


def _raw_name_length(info: zipfile.ZipInfo) -> int:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        return len(info.orig_filename.encode(encoding))
    except UnicodeEncodeError:  # pragma: no cover - zipfile decoded it with this codec
        return len(info.orig_filename)


# --------------------------------------------------------------------------- layout


def _collect(zf: zipfile.ZipFile, limits: ArchiveLimits) -> dict[str, zipfile.ZipInfo]:
    """Validate every entry and return the kept files by normalized full name."""
    infos = zf.infolist()
    if not infos:
        raise ScenarioError("the archive is empty")
    if len(infos) > limits.max_entries:
        raise ScenarioError(
            f"archive has {len(infos)} entries, more than the limit of {limits.max_entries}", 413
        )
    named: list[tuple[str, zipfile.ZipInfo]] = []
    for info in infos:
        name = _entry_name(info)
        _check_entry(info, name)
        named.append((name, info))
    files = [(n, i) for n, i in named if not n.endswith("/")]
    _check_overlap(files)
    _check_sizes(files, limits)

    kept: dict[str, zipfile.ZipInfo] = {}
    for name, info in files:
        if is_junk(name):
            continue
        if name in kept:
            raise ScenarioError(f"duplicate entry {name!r} in the archive")
        kept[name] = info
    if not kept:
        raise ScenarioError("the archive contains no files (only directories or ignored entries "
                            "such as __MACOSX/, .DS_Store, Thumbs.db, ._*)")
    dirs = {"/".join(n.split("/")[:i]) for n in kept for i in range(1, n.count("/") + 1)}
    clash = sorted(dirs & kept.keys())
    if clash:
        raise ScenarioError(f"entry {clash[0]!r} is both a file and a folder in the archive")
    return kept


def _common_root(names: list[str]) -> str:
    firsts = {n.split("/", 1)[0] if "/" in n else None for n in names}
    if len(firsts) == 1 and None not in firsts:
        return firsts.pop() + "/"
    return ""


def _choose_config(files: list[str], root: str, config_file: str | None) -> str:
    configs = sorted(f for f in files if f.lower().endswith(".sumocfg"))
    if not configs:
        raise ScenarioError("no .sumocfg file found in the archive")
    if config_file is None:
        if len(configs) > 1:
            raise ScenarioError(
                f"the archive contains several .sumocfg files ({', '.join(configs)}); "
                "choose one with config_file"
            )
        return configs[0]
    wanted = normalize_entry_name(config_file.strip())
    candidates = [wanted] if wanted else []
    if wanted and root and wanted.startswith(root):
        candidates.append(wanted[len(root):])
    for candidate in candidates:
        if candidate in configs:
            return candidate
    raise ScenarioError(
        f"config_file {config_file!r} is not a .sumocfg file of the archive; "
        f"available: {', '.join(configs)}"
    )


# --------------------------------------------------------------------------- public API


def inspect_archive(path: pathlib.Path | BinaryIO, config_file: str | None, limits: ArchiveLimits,
                    *, max_threads: int | None = None) -> Scenario:
    """Check the upload at ``path`` (a file, or a seekable binary file object) and describe its scenario.

    Raises :class:`ScenarioError` (400/413/422) naming the first problem found.
    Reads only the ZIP file; writes nothing. ``max_threads`` (the job's
    cpu_request) bounds the config's thread options; None leaves them free.
    """
    with _open_zip(path, limits) as zf:
        kept = _collect(zf, limits)
        root = _common_root(list(kept))
        rel = {name[len(root):]: info for name, info in kept.items()}
        files = sorted(rel)
        chosen = _choose_config(files, root, config_file)

        budget = InflationBudget(limits.max_uncompressed_bytes)

        def open_member(relpath: str) -> XmlMemberReader:
            info, name = rel[relpath], root + relpath
            stream = open_member_of(zf, info, name)
            return XmlMemberReader(BoundedReader(stream, info.file_size, name), budget, name)

        if rel[chosen].file_size > CONFIG_MAX_BYTES:
            raise ScenarioError(
                f"{chosen} is {rel[chosen].file_size} bytes, more than the {CONFIG_MAX_BYTES} bytes "
                "allowed for a SUMO configuration file", 413
            )
        config_bytes = read_member(zf, rel[chosen], root + chosen)
        analysis = analyze_config(config_bytes, chosen, frozenset(files), open_member, max_threads)
        return Scenario(
            root=root,
            config_file=chosen,
            files=tuple(files),
            uncompressed_size=sum(info.file_size for info in rel.values()),
            outputs=analysis.outputs,
            log_file=analysis.log_file,
        )


def _safe_parent(dest: pathlib.Path, parts: list[str]) -> pathlib.Path:
    """Create ``dest/parts...`` directory by directory, refusing symlinks on the way."""
    current = dest
    for part in parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ScenarioError(f"cannot extract into {current}: it exists and is not a directory")
    return current


def extract_scenario(path: pathlib.Path, scenario: Scenario, dest: pathlib.Path) -> None:
    """Write exactly ``scenario.files`` (root stripped) under ``dest``.

    Streams every entry and re-counts bytes, so a lying header cannot exceed
    the declared (and checked) sizes: an entry producing more bytes than
    declared raises 413. Never follows or creates symlinks (``O_NOFOLLOW``,
    ``O_EXCL``, parents checked with ``lstat``) and creates parent folders.
    ``dest`` may exist but must not already contain these files (they are
    created with ``O_EXCL``; an existing one raises ``FileExistsError``).
    On error ``dest`` may hold a partial extraction; the caller discards it.
    """
    path, dest = pathlib.Path(path), pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _open_zip(path) as zf:
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = normalize_entry_name(info.orig_filename)
            if name is not None and not name.endswith("/"):
                by_name.setdefault(name, info)
        budget = scenario.uncompressed_size
        written = 0
        for rel in scenario.files:
            if normalize_entry_name(rel) != rel or rel.endswith("/"):
                raise ScenarioError(f"unsafe file name {rel!r} in scenario")
            info = by_name.get(scenario.root + rel)
            if info is None:
                raise ScenarioError(f"entry {scenario.root + rel!r} is missing from the archive")
            _check_entry(info, rel)
            parts = rel.split("/")
            parent = _safe_parent(dest, parts[:-1])
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
                | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(parent / parts[-1], flags, 0o644)
            with os.fdopen(fd, "wb") as out, zf.open(info) as raw:
                for chunk in BoundedReader(raw, info.file_size, scenario.root + rel).chunks():
                    written += len(chunk)
                    if written > budget:
                        raise ScenarioError(
                            f"archive expands beyond its declared size of {budget} bytes", 413
                        )
                    out.write(chunk)

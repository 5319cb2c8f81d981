"""Craft ZIP archives for the ``core.scenario`` unit tests, always inside a tmp dir.

Small builders for the good cases (a minimal scenario, a scenario in a
top-level folder with macOS litter) and for every kind of hostile archive the
validator must refuse: unsafe names, symlinks, encryption, zip bombs (real,
overlapping entries, lying headers).
"""

from __future__ import annotations

import pathlib
import struct
import zipfile
import zlib

REPO = pathlib.Path(__file__).resolve().parents[2]
SQUARE_ZIP = REPO / "test_networks" / "zips" / "square.zip"
BOLOGNA_ZIP = REPO / "test_networks" / "zips" / "bologna-acosta.zip"

NET = b'<net version="1.20"><location netOffset="0,0"/></net>\n'
ROUTES = b"<routes/>\n"


def config_xml(body: str, root: str = "configuration") -> str:
    """A sumocfg document with ``body`` (sections/options) under ``root``."""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>\n{body}\n</{root}>\n'


def basic_config(extra: str = "", net: str = "net.net.xml", routes: str = "r.rou.xml") -> str:
    """Config reading ``net`` and ``routes`` plus ``extra`` elements."""
    return config_xml(
        f'<input>\n  <net-file value="{net}"/>\n  <route-files value="{routes}"/>\n</input>\n{extra}'
    )


def make_zip(
    directory: pathlib.Path,
    entries: dict[str, bytes | str] | list[tuple[str | zipfile.ZipInfo, bytes | str]],
    name: str = "upload.zip",
    compression: int = zipfile.ZIP_DEFLATED,
) -> pathlib.Path:
    """Write ``entries`` (name or ZipInfo -> content) verbatim into a new ZIP."""
    path = directory / name
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for entry, data in items:
            if isinstance(data, str):
                data = data.encode("utf-8")
            zf.writestr(entry, data)
    return path


def scenario_zip(
    directory: pathlib.Path,
    config: str | None = None,
    extra: dict[str, bytes | str] | None = None,
    config_name: str = "run.sumocfg",
    name: str = "upload.zip",
) -> pathlib.Path:
    """A minimal scenario (net, routes, config) plus ``extra`` files."""
    entries: dict[str, bytes | str] = {
        "net.net.xml": NET,
        "r.rou.xml": ROUTES,
        config_name: config if config is not None else basic_config(),
    }
    entries.update(extra or {})
    return make_zip(directory, entries, name=name)


def folder_scenario_with_junk(directory: pathlib.Path) -> pathlib.Path:
    """The square scenario zipped as ``proj/`` by macOS Finder (with __MACOSX litter)."""
    with zipfile.ZipFile(SQUARE_ZIP) as src:
        originals = {i.filename: src.read(i) for i in src.infolist()}
    entries: list[tuple[str | zipfile.ZipInfo, bytes | str]] = [("proj/", b"")]
    for fname, data in originals.items():
        entries.append((f"proj/{fname}", data))
        entries.append((f"__MACOSX/proj/._{fname}", b"\x00\x05\x16\x07 applesingle"))
    entries += [("proj/.DS_Store", b"\x00\x00\x00\x01Bud1"), ("__MACOSX/", b""),
                ("proj/Thumbs.db", b"junk"), ("proj/._square.sumocfg", b"appledouble")]
    return make_zip(directory, entries)


def symlink_zip(directory: pathlib.Path) -> pathlib.Path:
    """A scenario with ``link.xml`` stored as a symlink to /etc/passwd."""
    info = zipfile.ZipInfo("link.xml")
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    return make_zip(directory, [("net.net.xml", NET), ("r.rou.xml", ROUTES),
                                ("run.sumocfg", basic_config()), (info, "/etc/passwd")])


def encrypted_zip(directory: pathlib.Path) -> pathlib.Path:
    """A scenario whose ``r.rou.xml`` has the "encrypted" flag set (zipfile cannot write one)."""
    path = make_zip(directory, [("net.net.xml", NET), ("r.rou.xml", b"\x00" * 40),
                                ("run.sumocfg", basic_config())])
    data = bytearray(path.read_bytes())
    for rec in _central_records(bytes(data)):
        name_len = struct.unpack_from("<H", data, rec + 28)[0]
        if bytes(data[rec + 46:rec + 46 + name_len]) == b"r.rou.xml":
            struct.pack_into("<H", data, rec + 8, struct.unpack_from("<H", data, rec + 8)[0] | 1)
            local = struct.unpack_from("<I", data, rec + 42)[0]
            struct.pack_into("<H", data, local + 6, struct.unpack_from("<H", data, local + 6)[0] | 1)
    path.write_bytes(bytes(data))
    return path


def zeros_zip(directory: pathlib.Path, sizes: dict[str, int], name: str = "zeros.zip",
              with_config: bool = True) -> pathlib.Path:
    """Entries of zero bytes of the given sizes, streamed (a real zip bomb for big sizes)."""
    path = directory / name
    chunk = b"\x00" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        if with_config:
            zf.writestr("net.net.xml", NET)
            zf.writestr("r.rou.xml", ROUTES)
            zf.writestr("run.sumocfg", basic_config())
        for entry, size in sizes.items():
            with zf.open(entry, "w", force_zip64=size > 0x7FFFFFFF) as out:
                left = size
                while left:
                    n = min(left, len(chunk))
                    out.write(chunk[:n])
                    left -= n
    return path


def _central_records(data: bytes) -> list[int]:
    """Offsets of the central directory file headers in ``data``."""
    offsets, pos = [], data.find(b"PK\x01\x02")
    while pos != -1:
        offsets.append(pos)
        pos = data.find(b"PK\x01\x02", pos + 4)
    return offsets


def overlapping_zip(directory: pathlib.Path, copies: int = 10) -> pathlib.Path:
    """The "overlapping files" bomb: many central entries pointing at the same data."""
    path = make_zip(directory, [(f"b{i}.xml", b"\x00" * 100_000) for i in range(copies)])
    data = bytearray(path.read_bytes())
    for rec in _central_records(bytes(data)):
        struct.pack_into("<I", data, rec + 42, 0)  # relative offset of local header -> 0
    path.write_bytes(bytes(data))
    return path


def lying_header_zip(directory: pathlib.Path, real: int = 4 << 20, declared: int = 1000) -> pathlib.Path:
    """A scenario whose ``big.xml`` holds ``real`` zero bytes but declares ``declared``.

    The CRC is patched to match the first ``declared`` bytes, so zipfile's own
    CRC check does not fire; only the byte budget protects the extractor.
    """
    path = zeros_zip(directory, {"big.xml": real}, name="lying.zip")
    data = bytearray(path.read_bytes())
    crc = zlib.crc32(b"\x00" * declared)
    for rec in _central_records(bytes(data)):
        name_len = struct.unpack_from("<H", data, rec + 28)[0]
        if bytes(data[rec + 46:rec + 46 + name_len]) == b"big.xml":
            struct.pack_into("<I", data, rec + 16, crc)
            struct.pack_into("<I", data, rec + 24, declared)
            local = struct.unpack_from("<I", data, rec + 42)[0]
            struct.pack_into("<I", data, local + 14, crc)
            struct.pack_into("<I", data, local + 22, declared)
    path.write_bytes(bytes(data))
    return path


def config_with(*, additional: str = "", extra: str = "", net: str = "net.net.xml",
                routes: str = "r.rou.xml") -> str:
    """Config reading ``net``, ``routes`` and (if given) ``additional`` files, plus ``extra`` elements."""
    add = f'\n  <additional-files value="{additional}"/>' if additional else ""
    return config_xml(
        f'<input>\n  <net-file value="{net}"/>\n  <route-files value="{routes}"/>{add}\n</input>\n{extra}'
    )


def additional_xml(body: str, root: str = "additional") -> str:
    """An additional file with ``body`` under ``root`` (line 2 is the first body line)."""
    return f'<{root}>\n{body}\n</{root}>\n'

"""A corpus of hostile scenarios: each is square.zip with one thing a tenant should not get away with.

Every case names the host paths it aims at through a unique ``token`` (so a leak is found by name
anywhere it could land), the option a validation refusal should name, and what the run must end
with when validation lets it through.  Two tests use it: ``tests/hostile/test_raw_sandbox.py`` runs
each raw scenario in the sandbox with no validation at all (what proves the sandbox holds when
validation misses) and ``tests/integration/test_sandbox_local.py`` submits each one through the
real service.
"""
from __future__ import annotations

import io
import os
import re
import socket
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ZIPS = Path(__file__).resolve().parents[2] / "test_networks" / "zips"
SQUARE_CONFIG = "square.sumocfg"


@dataclass(frozen=True)
class Hostile:
    name: str
    archive: bytes
    options: tuple[str, ...]                 # a 4xx must name one of these
    config_file: str = SQUARE_CONFIG
    sentinels: tuple[Path, ...] = ()         # host files the run must not read (each a valid input)
    listener: bool = False                   # a test socket on the host that nothing may connect to
    must_fail: str | None = None             # the run must end FAILED with this in its reason
    memory_gi: int = 1
    timeout: float = 120                     # how long the run may take to end
    env: dict = field(default_factory=dict)  # settings the case needs (the stack's, or the runner's)


def _square(config_sub: tuple[str, str] | None = None, *, extra_files: dict[str, bytes] | None = None,
            options: str = "", end: int | None = None, routes: bytes | None = None) -> bytes:
    """square.zip with ``options`` added to its config (a fragment inside <configuration>), extra files,
    the simulation's end changed, or its routes replaced."""
    buf = io.BytesIO()
    with zipfile.ZipFile(ZIPS / "square.zip") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == SQUARE_CONFIG:
                text = data.decode()
                if end is not None:
                    text = text.replace('<end value="100"/>', f'<end value="{end}"/>')
                if config_sub is not None:
                    assert config_sub[0] in text, config_sub
                    text = text.replace(*config_sub)
                text = text.replace("</configuration>", f"{options}\n</configuration>")
                data = text.encode()
            elif info.filename == "square.rou.xml" and routes is not None:
                data = routes
            dst.writestr(info.filename, data)
        for name, data in (extra_files or {}).items():
            dst.writestr(name, data)
    return buf.getvalue()


def _output(option: str, value: str) -> str:
    return f'<output><{option} value="{value}"/></output>'


def sentinel_net(path: Path) -> Path:
    """A host file that is a valid network (square's): a run that could read it would run."""
    with zipfile.ZipFile(ZIPS / "square.zip") as src:
        path.write_bytes(src.read("square.net.xml"))
    return path


def listening_socket() -> socket.socket:
    """A TCP socket listening on the host's loopback, never accepting: anything connecting is queued."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def corpus(token: str, *, sentinel_dir: Path, port: int) -> list[Hostile]:
    """Every case, aiming at paths named after ``token``; sentinels are created in ``sentinel_dir``."""
    net_sentinel = sentinel_net(sentinel_dir / f"{token}-sentinel.net.xml")
    add_sentinel = sentinel_dir / f"{token}-sentinel.add.xml"
    add_sentinel.write_text(f'<additional><poly id="{token}-marker" shape="0,0 1,1" color="red"/></additional>\n')
    ssm_routes = (
        b'<routes><vType id="ssm"><param key="has.ssm.device" value="true"/>'
        + f'<param key="device.ssm.file" value="/tmp/{token}-ssm.xml"/>'.encode()
        + b'</vType><route id="r" edges="left0A0 A0B0 B0right0"/>'
          b'<flow id="f" type="ssm" route="r" begin="0" end="50" period="5"/></routes>\n'
    )
    bomb_routes = (b'<routes><route id="r" edges="left0A0 A0B0 B0right0"/>'
                   b'<flow id="boom" route="r" begin="0" end="1" number="50000000"/></routes>\n')
    include = {
        "extra.add.xml": b'<additional><include href="inner.xml"/></additional>\n',
        "inner.xml": f'<additional><edgeData id="e" file="/tmp/{token}-include.xml" period="10"/></additional>\n'.encode(),
    }
    return [
        Hostile("env-admin-key", _square(options=_output("summary-output", "${ADMIN_KEY}" + f"-{token}.xml")),
                ("summary-output", "ADMIN_KEY")),
        Hostile("env-database-url", _square(options=_output("tripinfo-output", "${DATABASE_URL}" + f"-{token}.xml")),
                ("tripinfo-output", "DATABASE_URL")),
        Hostile("env-unset-absolute", _square(options=_output("summary-output", "${UNSET}" + f"/tmp/{token}-unset.xml")),
                ("summary-output", "UNSET")),
        Hostile("home-tilde", _square(options=_output("summary-output", f"~/{token}-home.xml")),
                ("summary-output", "~")),
        Hostile("absolute-output", _square(options=_output("tripinfo-output", f"/tmp/{token}-abs.xml")),
                ("tripinfo-output",)),
        Hostile("dotdot-output", _square(options=_output("summary-output", f"../{token}-up1.xml")),
                ("summary-output", "..")),
        Hostile("dotdot-output-2", _square(options=_output("tripinfo-output", f"../../{token}-up2.xml")),
                ("tripinfo-output", "..")),
        Hostile("include-edgedata", _square(extra_files=include,
                                            options='<input><additional-files value="extra.add.xml"/></input>'),
                ("include", "edgeData", "inner.xml", "extra.add.xml", "file")),
        Hostile("ssm-param-file", _square(routes=ssm_routes), ("device.ssm.file", "square.rou.xml", "param")),
        Hostile("read-host-net", _square(('<net-file value="square.net.xml"/>', f'<net-file value="{net_sentinel}"/>')),
                ("net-file",), sentinels=(net_sentinel,)),
        Hostile("read-host-additional",
                _square(options=f'<input><additional-files value="{add_sentinel}"/></input>'
                                + _output("summary-output", f"{token}-summary.xml")),
                ("additional-files",), sentinels=(add_sentinel,)),
        Hostile("read-proc-environ",
                _square(options='<input><additional-files value="/proc/1/environ"/></input>'),
                ("additional-files",)),
        Hostile("socket-output", _square(options=_output("tripinfo-output", f"127.0.0.1:{port}")),
                ("tripinfo-output",), listener=True),
        Hostile("overwrite-input", _square(options=_output("tripinfo-output", "square.net.xml")),
                ("tripinfo-output", "square.net.xml")),
        Hostile("overwrite-runner-log", _square(options=_output("summary-output", "../sumo.log")),
                ("summary-output", "..", "sumo.log")),
        Hostile("threads-64", _square(options='<processing><threads value="64"/></processing>'), ("threads",)),
        Hostile("memory-bomb", _square(routes=bomb_routes), ("number", "flow", "square.rou.xml"),
                must_fail="memory_gi=1", timeout=180),
        Hostile("disk-fill", _square(end=1_000_000_000, options=_output("fcd-output", f"{token}-fcd.xml")),
                ("fcd-output",), must_fail="MAX_OUTPUT_MB exceeded", env={"MAX_OUTPUT_MB": "5"}, timeout=180),
        Hostile("log-flood", _square(end=1_000_000_000, options="<report><verbose value=\"true\"/>"
                                                                 "<step-log.period value=\"1\"/></report>"),
                ("verbose", "step-log.period"), must_fail="MAX_LOG_MB exceeded", env={"MAX_LOG_MB": "1"},
                timeout=180),
    ]


def describe() -> tuple[list[str], dict[str, str]]:
    """The names of the cases and the settings they need together (for parametrizing; keeps no sentinel)."""
    with tempfile.TemporaryDirectory() as scratch:
        cases = corpus("describe", sentinel_dir=Path(scratch), port=1)
    return [c.name for c in cases], {k: v for c in cases for k, v in c.env.items()}


def leaked_paths(token: str, *, roots: list[Path], deep: list[Path], allowed: list[Path]) -> list[Path]:
    """Host files named after ``token`` outside ``allowed`` folders: directly in each of ``roots``
    (/, /tmp, HOME) and anywhere below each of ``deep`` (DATA_DIR); the sentinels are the test's own."""
    found: list[Path] = []

    def consider(path: Path) -> None:
        if token in path.name and "-sentinel." not in path.name \
                and not any(a == path or a in path.parents for a in allowed):
            found.append(path)

    for root in roots:
        with os.scandir(root) as entries:
            for entry in entries:
                consider(Path(entry.path))
    for top in deep:
        for folder, dirs, files in os.walk(top):
            for name in dirs + files:
                consider(Path(folder) / name)
    return sorted(set(found))


def secrets_in(texts: list[str], secrets: list[str]) -> list[str]:
    """The secrets that occur in any of ``texts`` (whole or, for a URL, its password-bearing part)."""
    return [s for s in secrets if s and any(s in t for t in texts)]


def names_an_option(detail: str, options: tuple[str, ...]) -> bool:
    return any(re.search(re.escape(o), detail) for o in options)

"""A stand-in for ``sumo`` that writes a log of any size, for measuring what a huge log costs the service.

The local executor runs ``SUMO_BINARY -c <config> ...`` in the scenario's directory; :func:`install` writes
an executable that runs this module there.  It reads ``fake-sumo.json`` from that directory (put it in the
scenario's ZIP next to the ``.sumocfg``):

- ``log_bytes``: exactly this many bytes on stdout, which is the job's log: SUMO-like lines, most of them
  progress lines ended by CR as SUMO's step log writes them, some ended by LF, some by CR LF, some with
  non-ASCII characters;
- ``output_bytes``: a result file ``fake-output.bin`` of this size;
- ``hold_file``: once the log is written, wait (at most ``hold_seconds``) until a file of this name exists
  in the directory, so the log can be read while the job still runs.

The log is a function of its size only (:func:`log_bytes`), so a test can compare what it reads with it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CONFIG = "fake-sumo.json"
OUTPUT = "fake-output.bin"

_HEAD = b"Loading net-file from 'net.net.xml' ... done (12ms).\nLoading done.\nSimulation version 1.0 started via fake_sumo.\n"
_END = b"\nSimulation ended at time: 100.00\nReason: TraCI requested termination.\nDONE.\n"


def _block() -> bytes:
    """About 1 MiB of step log: CR-ended progress lines, and now and then a warning ended by LF or CR LF."""
    out = bytearray()
    step = 0
    while len(out) < (1 << 20):
        for _ in range(97):
            out += b"Step #%d.00 (1ms ~= 1000.00*RT, ~21000.00UPS, vehicles TOT %d ACT 21 BUF 0)\r" % (step, step)
            step += 1
        out += "Warning: Vehicle 'véh_%d' teleports; caused by collision (wait=300s).\n".encode() % step
        out += b"Warning: Teleport of vehicle '%d' ended.\r\n" % step
    return bytes(out)


def log_bytes(size: int):
    """The log of ``size`` bytes, in pieces of about 1 MiB."""
    if size <= len(_HEAD) + len(_END):
        yield (_HEAD + _END)[:size]
        return
    yield _HEAD
    left, block = size - len(_HEAD) - len(_END), _block()
    while left > 0:
        piece = block[:left]
        yield piece
        left -= len(piece)
    yield _END


def main() -> int:
    if "--save-configuration" in sys.argv:  # what the sandbox's start-up check asks of sumo
        Path(sys.argv[sys.argv.index("--save-configuration") + 1]).write_text("<configuration/>\n")
        return 0
    settings = json.loads(Path(CONFIG).read_text()) if Path(CONFIG).exists() else {}
    out = sys.stdout.buffer
    for piece in log_bytes(int(settings.get("log_bytes", 10_000))):
        out.write(piece)
    out.flush()
    if (size := int(settings.get("output_bytes", 0))) > 0:
        pattern = os.urandom(1 << 20)
        with open(OUTPUT, "wb") as fh:
            for start in range(0, size, len(pattern)):
                fh.write(pattern[:size - start])
    if hold := settings.get("hold_file"):
        deadline = time.monotonic() + float(settings.get("hold_seconds", 600))
        while not Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return 0


def install(directory: Path) -> Path:
    """An executable ``directory/bin/sumo`` that runs a copy of this module with the system's python3 (for
    SUMO_BINARY).  Both live in ``directory``, which the local sandbox shows read-only as SUMO's install
    (SUMO_HOME is the binary's grandparent): the checkout and the venv stay out of its sight."""
    import shutil

    bindir = directory / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    module = directory / "fake_sumo.py"
    shutil.copyfile(Path(__file__), module)
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    path = bindir / "sumo"
    path.write_text(f"#!/bin/sh\nexec {python} {module} \"$@\"\n")
    for folder in (directory, bindir):
        folder.chmod(0o755)  # the sandboxed run's uid reads them (pytest makes its folders 0700)
    module.chmod(0o644)
    path.chmod(0o755)
    return path


def scenario(settings: dict) -> bytes:
    """square.zip with ``fake-sumo.json`` added: the service validates a real scenario, the fake runs it."""
    import io
    import zipfile

    zips = Path(__file__).resolve().parent.parent / "test_networks" / "zips"
    buf = io.BytesIO()
    with zipfile.ZipFile(zips / "square.zip") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr(CONFIG, json.dumps(settings))
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())

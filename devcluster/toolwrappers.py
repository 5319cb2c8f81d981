"""Wrappers that let a pod run the venv's console scripts (``sumo``, ``netconvert``, ``python`` ...).

A pod sees the venv at ``TOOLS_MNT/venv`` (its host path may be hidden by a volume, e.g. one at ``/work``) and
``TOOLS_MNT/bin`` first on its PATH: a wrapper there for each console script, since their shebangs name the
host path (see :mod:`devcluster.podrun`).
"""
from __future__ import annotations

import os
from pathlib import Path

TOOLS_MNT = "/mnt/devcluster"


def make_tool_wrappers(venv: Path, out: Path) -> None:
    """Write ``out/<script>`` wrappers that run the venv's console scripts
    from its in-pod location ``TOOLS_MNT/venv`` (their shebangs name the host
    path, which a pod volume may hide)."""
    out.mkdir(parents=True, exist_ok=True)
    inpod = f"{TOOLS_MNT}/venv/bin"
    for f in sorted((venv / "bin").iterdir()):
        w = out / f.name
        if f.name.startswith(("python", "activate", "Activate")):
            if f.name.startswith("python"):
                w.unlink(missing_ok=True)
                w.symlink_to(f"{inpod}/{f.name}")
            continue
        if not f.is_file() or not os.access(f, os.X_OK):
            continue
        with open(f, "rb") as fh:
            first = fh.readline()
            head = fh.read(4096) if first.startswith(b"#!") and b"python" in first else b""
        native = _sumo_launcher_target(venv, f.name, head)
        if native is not None:
            # The eclipse-sumo launcher only starts Python to run bin/<tool> with SUMO_HOME (and PROJ_LIB)
            # set: do that in the shell, as the image's native binary would run, without a Python per call.
            home = f"{TOOLS_MNT}/venv/{native.parent.parent.relative_to(venv).as_posix()}"
            body = (f': "${{SUMO_HOME:={home}}}"; export SUMO_HOME\n'
                    f'if [ -z "${{PROJ_LIB:-}}" ] && [ -z "${{PROJ_DATA:-}}" ]; then\n'
                    f'  PROJ_LIB={home}/data/proj; PROJ_DATA={home}/data/proj; export PROJ_LIB PROJ_DATA\n'
                    f'fi\n'
                    f'exec {home}/bin/{native.name} "$@"\n')
        elif head or (first.startswith(b"#!") and b"python" in first):
            body = f'exec {inpod}/python3 {inpod}/{f.name} "$@"\n'
        else:
            body = f'exec {inpod}/{f.name} "$@"\n'
        w.write_text("#!/bin/sh\n" + body)
        w.chmod(0o755)


def _sumo_launcher_target(venv: Path, name: str, script: bytes) -> Path | None:
    """The native binary an eclipse-sumo console script (``from sumo import <tool>``) launches, if any."""
    import re

    m = re.search(rb"^from sumo import (\w+)$", script, re.M)
    if m is None:
        return None
    for binary in sorted(venv.glob(f"lib/python*/site-packages/sumo/bin/{m.group(1).decode()}")):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None

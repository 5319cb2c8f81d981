"""The generated option table must match the installed sumo binary (no drift).

Also checks, with the real binary, the facts the validator relies on: which
gui_only file options the sumo CLI still reads, and that the scenarios we
accept really load.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import zipfile

import pytest

from core.scenario import ArchiveLimits, extract_scenario, inspect_archive, sumo_options
from core.scenario import sumo_options_gen

from core.executors.local import default_sumo_binary
from tests.unit.scenario_archives import BOLOGNA_ZIP, SQUARE_ZIP


def _sumo() -> str:
    """The real binary the service runs (the eclipse-sumo wheel's, a project dependency): never skipped."""
    return os.environ.get("SUMO_BINARY") or default_sumo_binary()


def test_table_matches_binary():
    generated = sumo_options_gen.generate(_sumo())
    committed = pathlib.Path(sumo_options.__file__).read_text(encoding="utf-8")
    assert generated == committed, (
        "core/scenario/sumo_options.py is stale; run "
        "`python -m core.scenario.sumo_options --generate`"
    )


def test_table_contents():
    assert {"net-file", "route-files", "additional-files", "weight-files", "load-state"} \
        <= sumo_options.INPUT_FILE_OPTIONS
    assert {"tripinfo-output", "fcd-output", "log", "device.ssm.file"} <= sumo_options.OUTPUT_FILE_OPTIONS
    assert sumo_options.SYNONYMS["tripinfo"] == "tripinfo-output"
    assert sumo_options.SYNONYMS["n"] == "net-file"
    assert sumo_options.TRACI_OPTIONS == {"remote-port": "0", "num-clients": "1"}
    assert not sumo_options.INPUT_FILE_OPTIONS & sumo_options.OUTPUT_FILE_OPTIONS


def _run_sumo(sumo: str, cwd: pathlib.Path, config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sumo, "-c", config, "--end", "2", "--no-step-log"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_gui_only_file_options_read_by_sumo(tmp_path):
    """GUI_INPUT_OPTIONS is exactly the set of gui_only FILE options sumo refuses to miss."""
    sumo = _sumo()
    with zipfile.ZipFile(SQUARE_ZIP) as zf:
        zf.extractall(tmp_path)
    tpl = sumo_options.OPTION_TYPES
    gui_files = sorted(o for o in sumo_options.GUI_ONLY_OPTIONS | sumo_options_gen.GUI_INPUT_OPTIONS
                       if tpl[o] == "FILE" and not o.endswith("output"))
    read = set()
    for opt in gui_files:
        cfg = tmp_path / "g.sumocfg"
        cfg.write_text('<configuration><input><net-file value="square.net.xml"/>'
                       '<route-files value="square.rou.xml"/></input>'
                       f'<gui_only><{opt} value="missing-file.xml"/></gui_only></configuration>')
        if _run_sumo(sumo, tmp_path, cfg.name).returncode != 0:
            read.add(opt)
    assert read == set(sumo_options_gen.GUI_INPUT_OPTIONS)


@pytest.mark.parametrize("archive", [SQUARE_ZIP, BOLOGNA_ZIP], ids=["square", "bologna"])
def test_accepted_scenarios_load_in_sumo(tmp_path, archive):
    sumo = _sumo()
    s = inspect_archive(archive, None, ArchiveLimits(64 << 20, 1000, 100))
    extract_scenario(archive, s, tmp_path)
    result = _run_sumo(sumo, tmp_path, s.config_file)
    assert result.returncode == 0, result.stderr
    for out in s.outputs:
        assert (tmp_path / out).exists()
    if s.log_file:
        assert (tmp_path / s.log_file).exists()

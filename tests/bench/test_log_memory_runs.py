"""bench.log_memory still runs end to end and reports complete figures (small size, no target compared;
see test_benchmarks_run.py for why this tier exists)."""
from __future__ import annotations

import json

import pytest

from bench import common

PHASES = ["live: tail=100 x3", "live: whole log as JSON", "live: SSE from the middle", "collecting (the job released)",
          "archived: tail=100 x3", "archived: whole log as JSON", "archived: SSE from the middle",
          "archived: download sumo.log"]


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUT", tmp_path)
    return tmp_path


def test_log_memory_measures_every_process_in_every_phase(results_in_tmp):
    from bench import log_memory

    result = log_memory.main(["--log-mb", "8", "--tails", "3"])

    assert result["log_bytes"] == 8 * 1024 * 1024
    assert list(result["phases"]) == PHASES
    for name, phase in result["phases"].items():
        assert {"api", "workers", "simulations", "sweeper"} <= set(phase["peak_rss_mb"]), name
        assert all(mb > 0 for mb in phase["peak_rss_mb"].values()), name
        assert phase["seconds"] >= 0
    for where in ("live", "archived"):
        assert result["tail_100"][where]["n"] == 3 and result["tail_100"][where]["p50_ms"] > 0
        assert result["phases"][f"{where}: whole log as JSON"]["bytes"] > result["log_bytes"]  # JSON escapes CR
    assert result["phases"]["archived: download sumo.log"]["bytes"] == result["log_bytes"]
    assert json.loads((results_in_tmp / "log_memory.json").read_text())["phases"].keys() == result["phases"].keys()

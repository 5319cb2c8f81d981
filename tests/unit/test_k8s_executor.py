"""Executor pieces that need no cluster: the input re-pack and the collector output parser."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from kubernetes import client

from core.executors.base import JobSpec
from core.executors.kubernetes.executor import KubernetesExecutor, parse_collector_log
from core.settings import Settings
from core.storage.local import LocalStore

BOLOGNA = Path(__file__).resolve().parents[2] / "test_networks" / "zips" / "bologna-acosta.zip"


def test_repack_is_deterministic_and_keeps_only_the_scenario(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("inputs/t/j.zip", BOLOGNA)
    ex = KubernetesExecutor(Settings(), None, store=store, api=client.ApiClient())
    spec = JobSpec("j", "t", "ns", 1, 1, "run.sumocfg", "inputs/t/j.zip", 60)
    first, config, log_file = ex._repack(spec)
    second, _, _ = ex._repack(spec)
    assert first == second  # a re-delivered start re-creates byte-identical ConfigMaps
    assert (config, log_file) == ("run.sumocfg", "sumo_log.txt")
    import io

    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "run.sumocfg" in names and "acosta_buslanes.net.xml" in names


def test_collector_output_must_be_complete():
    with pytest.raises(RuntimeError, match="truncated"):
        parse_collector_log('{"files": {}}\nAAAA\n')
    with pytest.raises(RuntimeError, match="digest"):
        parse_collector_log('{"files": {}}\nAAAA\nEND 00\n')

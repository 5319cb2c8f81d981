"""The simulation pod's caps (MAX_OUTPUT_MB, MAX_LOG_MB) and the live log read by timestamp, on the dev cluster
with the real ``sumo``: a run past a cap is stopped and FAILED naming the setting, and what it wrote within the
caps is still collected; a reader resuming after each position's mark gets every byte of the log once."""
from __future__ import annotations

import hashlib

import pytest

from core.domain.states import JobStatus
from core.executors.base import LogPosition
from core.executors.kubernetes import KubernetesExecutor
from core.bootstrap import archive_limits
from devcluster.procs import wait_for
from tests.kube.conftest import Recorder, square_variant

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]
MB = 1024 * 1024


def capped(settings, store, cluster, receiver, **caps) -> KubernetesExecutor:
    return KubernetesExecutor(settings.model_copy(update=caps), None, limits=archive_limits(settings), store=store,
                              api=cluster.api_client(), publish=Recorder(), uploads=receiver.uploads)


def scenario(tmp_path, name: str, end: int, report: str = "", output: str = ""):
    import zipfile

    from tests.kube.conftest import SQUARE

    with zipfile.ZipFile(SQUARE) as zf:
        config = zf.read("square.sumocfg").decode()
    sections = (f"<report>{report}</report>" if report else "") + (f"<output>{output}</output>" if output else "")
    config = config.replace('<end value="100"/>', f'<end value="{end}"/>').replace(
        "</configuration>", f"{sections}</configuration>")
    return square_variant(tmp_path, name, extra={"square.sumocfg": config.encode()})


def test_a_run_past_max_log_mb_fails_naming_it_and_its_log_is_kept_up_to_the_cap(settings, store, cluster, receiver,
                                                                                   submit, watcher, tmp_path):
    executor = capped(settings, store, cluster, receiver, max_log_mb=1)
    # the step log prints ~90 bytes per step: 20000 steps are about 1.8 MB
    spec = submit(scenario(tmp_path, "chatty.zip", 20000, report='<step-log.period value="1"/>'))
    executor.start(spec)
    failed = watcher.recorder.wait(spec.job_id, JobStatus.FAILED, 180)
    assert failed.reason.startswith("MAX_LOG_MB: the run printed more than 1 MB to its console"), failed
    assert failed.exit_code == 3

    receiver.expect(spec)
    results = executor.collect(spec, store)
    log = {f["name"]: f for f in results.files}["sumo.log"]
    assert log["size"] == MB and results.log_archived  # the console up to the cap, exactly
    assert b"Step #1000.00" in store.get_bytes(spec.log_key)


def test_a_run_past_max_output_mb_fails_naming_it_and_its_outputs_stay_within_it(settings, store, cluster, receiver,
                                                                                  submit, watcher, tmp_path):
    executor = capped(settings, store, cluster, receiver, max_output_mb=1)
    spec = submit(scenario(tmp_path, "writer.zip", 20000, output='<fcd-output value="fcd.xml"/>'))
    executor.start(spec)
    failed = watcher.recorder.wait(spec.job_id, JobStatus.FAILED, 180)
    assert failed.reason.startswith("MAX_OUTPUT_MB: the run wrote more than 1 MB into its run directory"), failed

    receiver.expect(spec)
    results = executor.collect(spec, store)
    names = {f["name"] for f in results.files}
    assert "fcd.xml" not in names and "sumo.log" in names  # past the cap: left out, the rest collected
    assert sum(f["size"] for f in results.files if f["name"] != "sumo.log") <= MB


def test_the_live_log_resumes_after_each_mark_and_gives_every_byte_once(settings, store, cluster, receiver, submit,
                                                                        watcher, tmp_path):
    # a Job kept a while after it ends (TTL), so the reader can drain the pod's log after its last line
    executor = capped(settings, store, cluster, receiver, job_ttl_seconds=120)
    spec = submit(scenario(tmp_path, "steady.zip", 60000, report='<step-log.period value="20"/>'))
    executor.start(spec)
    watcher.recorder.wait(spec.job_id, JobStatus.RUNNING, 120)

    got, position, reads = bytearray(), LogPosition(), 0

    def read_on() -> bytes:
        nonlocal position, reads
        found = executor.read_live_log_from(spec, position, 2048)
        if found is None:
            return b""
        data, position = found
        position = LogPosition.parse(position.token())  # as a client sends it back in Last-Event-ID
        got.extend(data)
        reads += 1
        assert len(data) <= 2048 and position.offset == len(got)
        return data

    def ended_and_drained() -> bool:
        ended = JobStatus.SUCCEEDED in watcher.recorder.statuses(spec.job_id)
        while read_on():
            pass
        return ended and not read_on()

    wait_for("the run ended and its log read to the end", ended_and_drained, 180, interval=0.2)
    assert reads > 3, "the log was read in several pieces while the job ran"
    tail = executor.tail_live_log(spec, 3, 4096)
    assert tail and bytes(got).endswith(tail) and tail.count(b"\n") <= 3

    receiver.expect(spec)
    results = executor.collect(spec, store)
    log = store.get_bytes(spec.log_key)
    assert {f["name"]: f for f in results.files}["sumo.log"]["sha256"] == hashlib.sha256(log).hexdigest()
    assert bytes(got) == log  # the pod log read by mark is the run's console, byte for byte

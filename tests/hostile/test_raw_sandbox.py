"""The sandbox holds when validation misses: every hostile scenario, unpacked as it is (no validation),
run by the local runner in its sandbox, and the host checked afterwards.

The work root is under pytest's temp folder (mode 0700 above it), as DATA_DIR may be anywhere: the
sandbox must work from there.  Fake credentials are put into this process's environment, as a worker
has them; none may reach a run.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from core.domain.states import JobStatus
from core.executors.local_process import pids_of_uid
from core.waits import wait_until
from tests.hostile.fixtures import corpus_fixtures, require_root
from tests.hostile.raw import run_raw, runner
from tests.hostile.scenarios import ZIPS, describe, leaked_paths, secrets_in

TOKEN, listener, cases = corpus_fixtures("hx")
SECRETS = {"ADMIN_KEY": f"ak-{TOKEN}-admin", "DATABASE_URL": f"postgresql://svc:pw-{TOKEN}@db:5432/sumo",
           "AWS_SECRET_ACCESS_KEY": f"aws-{TOKEN}-secret"}


@pytest.fixture(scope="module")
def work_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-raw") / "work"


@pytest.fixture(autouse=True)
def worker_secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", describe()[0])
def test_a_hostile_scenario_stays_in_its_sandbox(name, cases, work_root, listener):
    require_root()
    case = cases[name]
    run = runner(work_root, max_output_mb=int(case.env.get("MAX_OUTPUT_MB", 100)),
                 max_log_mb=int(case.env.get("MAX_LOG_MB", 10)))
    result = run_raw(run, case.archive, case.config_file, memory_gi=case.memory_gi, deadline=int(case.timeout))
    event, wd = result.event, result.wd

    # It ended, and as the case says when it must fail.
    assert event.status in (JobStatus.SUCCEEDED, JobStatus.FAILED), event
    if case.must_fail:
        assert event.status is JobStatus.FAILED and case.must_fail in event.reason, event
    if case.sentinels:  # each sentinel is a valid input: a run that could read it would have succeeded
        assert event.status is JobStatus.FAILED and "not accessible" in (event.log_tail or ""), event

    # Nothing of the run survives it.
    assert wait_until(lambda: not pids_of_uid(result.uid), 10, f"processes of uid {result.uid} to end")

    # Nothing named after the token outside the runs' folders: not in /, /tmp, HOME, nor the work root.
    allowed = [wd.run_dir, wd.stats_dir]
    runs = [*work_root.glob("*/run"), *work_root.glob("*/stats")]
    assert leaked_paths(TOKEN, roots=[Path("/"), Path("/tmp"), Path.home()], deep=[work_root.parent],
                        allowed=runs) == []
    # Nothing of the run's uid outside its folders; the runner's own files are the runner's.
    for path in [*Path("/tmp").iterdir(), *Path.home().iterdir(), *wd.root.iterdir()]:
        if path not in allowed:
            assert path.lstat().st_uid != result.uid, path
    assert not wd.log.read_bytes().lstrip().startswith(b"<"), "the run wrote over the runner's log"

    # The inputs are as uploaded.
    with zipfile.ZipFile(io.BytesIO(case.archive)) as zf:
        for info in zf.infolist():
            digest = hashlib.sha256(zf.read(info)).hexdigest()
            assert hashlib.sha256((wd.run_dir / info.filename).read_bytes()).hexdigest() == digest, info.filename

    # No secret of the worker in anything the tenant gets back: output names and contents, log, status.
    texts = [str(event.to_message()), wd.log.read_text(errors="replace")]
    for path in [*wd.run_dir.rglob("*"), *wd.stats_dir.rglob("*")]:
        texts.append(path.name)
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50 * 2**20:
            texts.append(path.read_text(errors="replace"))
    assert secrets_in(texts, list(SECRETS.values())) == []

    # Nothing connected to the host's listening socket.
    if case.listener:
        with pytest.raises(BlockingIOError):
            listener.accept()


def _sumo_of(uid: int) -> list[int]:
    return [pid for pid in pids_of_uid(uid) if Path(f"/proc/{pid}/comm").read_text().strip() == "sumo"]


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_a_stopped_run_leaves_no_process(how, work_root):
    """Cancel and deadline stop the whole process tree: bwrap, its init and SUMO's threads."""
    require_root()
    from tests.integration.harness import long_square

    seen = {}

    def on_start(wd, uid):
        seen["pids"] = wait_until(lambda: _sumo_of(uid), 30, "sumo to start", not_yet=(OSError,))
        if how == "cancel":  # once SUMO is stepping, so its SIGTERM handler is in place
            wait_until(lambda: b"Step #" in wd.log.read_bytes(), 30, "sumo to step")
            wd.cancel_marker.touch()

    run = runner(work_root)
    result = run_raw(run, long_square(), "square.sumocfg", deadline=3 if how == "deadline" else 120,
                     on_start=on_start)
    assert seen["pids"], "sumo ran under the slot's uid"
    if how == "cancel":
        assert result.event.status is JobStatus.CANCELLED
        assert "Reason: Interrupted" in result.wd.log.read_text(), "SUMO got the SIGTERM and closed its files"
    else:
        assert result.event.status is JobStatus.FAILED and result.event.reason.startswith("DeadlineExceeded")
    assert pids_of_uid(result.uid) == [], "no process of the run's uid is left"


def test_the_checks_catch_an_unconfined_run(cases, tmp_path):
    """The checks above can fail: the same cases run unconfined (LOCAL_SANDBOX=off) leave what they
    look for — a file outside the run, a host file read."""
    work = tmp_path / "work"
    run = runner(work, confined=False)
    leaks = []
    try:
        for name in ("absolute-output", "dotdot-output"):
            run_raw(run, cases[name].archive, cases[name].config_file)
            leaks = leaked_paths(TOKEN, roots=[Path("/"), Path("/tmp")], deep=[tmp_path],
                                 allowed=[*work.glob("*/run"), *work.glob("*/stats")])
            assert leaks, f"{name} run unconfined wrote outside its run folder"
            for path in leaks:
                path.unlink()
        read = run_raw(run, cases["read-host-net"].archive, cases["read-host-net"].config_file)
        assert read.event.status is JobStatus.SUCCEEDED, "unconfined, the host's file was read"
    finally:
        for path in leaks:
            path.unlink(missing_ok=True)


def test_a_program_of_the_chain_gone_fails_the_job_instead_of_leaving_it(work_root):
    import dataclasses

    require_root()
    run = runner(work_root)
    run.sandbox = dataclasses.replace(run.sandbox, tools=dataclasses.replace(run.sandbox.tools,
                                                                              unshare="/nonexistent/unshare"))
    result = run_raw(run, (ZIPS / "square.zip").read_bytes(), "square.sumocfg")
    assert result.event.status is JobStatus.FAILED and "could not start sumo" in result.event.reason

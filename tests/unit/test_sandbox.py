"""The sandbox's command line, built from plain values (core.executors.sandbox), and the pieces of the
runner that need no process: the output meter, the log cap, the exit reasons, the safe log copy."""
from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest

from core.executors.local_process import LogPump, exit_signal, open_beneath, written_bytes
from core.executors.sandbox import (
    CHAIN_ENV, STAGE, STATS_DIR, HostView, Limits, RunBox, Tools, bwrap_args, confined_command, job_dir,
    stage_spec, unconfined_command, unconfined_env,
)
from core.executors.sandbox_host import Sandbox, find_tools, sumo_layout

TOOLS = Tools(unshare="/usr/bin/unshare", prlimit="/usr/bin/prlimit", bwrap="/usr/bin/bwrap",
              python="/venv/bin/python", stage="/app/core/executors/sandbox_stage.py")
HOST = HostView(sumo_home="/venv/site-packages/sumo",
                sumo_dirs=("/venv/site-packages/sumo", "/venv/site-packages/eclipse_sumo.libs"),
                links=(("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")),
                files=("/etc/ld.so.cache",))
LIMITS = Limits.for_run(memory_gi=2, cpu_request=3, deadline_seconds=600, max_output_mb=100)
BOX = RunBox(uid=1_900_000_001, gid=1_900_000_001, run_dir="/data/work/j1/run", stats_dir="/data/work/j1/stats",
             job_dir=job_dir("j1"), workdir=job_dir("j1") + "/sub", limits=LIMITS)
ARGV = ["/venv/site-packages/sumo/bin/sumo", "-c", "run.sumocfg"]


def _command() -> list[str]:
    return confined_command(BOX, HOST, TOOLS, ARGV)


def _pairs(args: list[str], option: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def _bwrap_part(command: list[str]) -> list[str]:
    start = command.index(TOOLS.bwrap) + 1
    return command[start:command.index("--", start)]


def test_the_chain_stages_as_root_then_limits_then_confines_and_ends_with_sumo():
    command = _command()
    assert command[:5] == [TOOLS.unshare, "--mount", "--propagation", "private", "--"]
    assert command[5:9] == [TOOLS.python, "-I", "-S", TOOLS.stage]
    spec = json.loads(command[9])
    assert (spec["uid"], spec["gid"], spec["stage"]) == (BOX.uid, BOX.gid, STAGE)
    assert command[10] == TOOLS.prlimit
    assert command.index(TOOLS.prlimit) < command.index(TOOLS.bwrap)
    assert command[-len(ARGV):] == ARGV and command[-len(ARGV) - 1] == "--"


def test_the_stage_mounts_the_job_folders_and_sumo_and_a_limited_tmp():
    spec = stage_spec(BOX, HOST)
    assert spec["binds"] == [[BOX.run_dir, "run"], [BOX.stats_dir, "stats"],
                             ["/venv/site-packages/sumo", "sumo0"], ["/venv/site-packages/eclipse_sumo.libs", "sumo1"]]
    assert spec["tmpfs"] == [["tmp", BOX.tmp_bytes, BOX.tmp_inodes]]


def test_every_namespace_is_new_and_the_sandbox_dies_with_its_parent():
    args = bwrap_args(BOX, HOST)
    for option in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                   "--clearenv"):
        assert option in args
    assert "--share-net" not in args, "no network: its own network namespace"
    assert args.index("--clearenv") < args.index("--setenv")


def test_the_environment_is_only_what_sumo_needs():
    env = dict(_pairs(bwrap_args(BOX, HOST), "--setenv"))
    assert env == {"SUMO_HOME": HOST.sumo_home, "HOME": BOX.job_dir, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                   "LC_ALL": "C.UTF-8", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"}
    assert set(CHAIN_ENV) == {"PATH", "LANG"}, "the chain's own environment (visible as /proc/1/environ) is minimal"


def test_only_the_run_and_statistics_folders_and_tmp_are_writable():
    args = bwrap_args(BOX, HOST)
    assert _pairs(args, "--bind") == [(f"{STAGE}/tmp", "/tmp"), (f"{STAGE}/run", BOX.job_dir),
                                      (f"{STAGE}/stats", STATS_DIR)]
    # SUMO's install is placed after /tmp: one that lives under /tmp (a test's stand-in) stays visible.
    assert args.index(f"{STAGE}/tmp") < args.index(f"{STAGE}/sumo0")
    ro = dict((dest, src) for src, dest in _pairs(args, "--ro-bind"))
    assert ro == {"/usr": "/usr", "/etc/ld.so.cache": "/etc/ld.so.cache",
                  "/venv/site-packages/sumo": f"{STAGE}/sumo0",
                  "/venv/site-packages/eclipse_sumo.libs": f"{STAGE}/sumo1"}
    assert ("usr/lib", "/lib") in _pairs(args, "--symlink")
    # The root is made read-only after everything is placed in it; SUMO starts where its config is.
    assert args[-3:] == ["/", "--chdir", BOX.workdir] and args[-4] == "--remount-ro"


def test_dev_holds_the_plain_devices_only_and_proc_is_new():
    args = bwrap_args(BOX, HOST)
    assert "--dev" not in args, "no devpts, shm or tty"
    assert [d for d, _ in _pairs(args, "--dev-bind")] == [f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom")]
    assert args[args.index("--proc") + 1] == "/proc"
    assert ("/proc/self/fd/1", "/dev/stdout") in _pairs(args, "--symlink"), "--log /dev/stdout reaches the pipe"


def test_the_work_root_is_never_bound_only_its_run_and_statistics_folders():
    command = _command()
    assert not any(a in ("/data/work/j1", "/data/work") for a in command)


def test_limits_follow_the_job():
    assert LIMITS.address_space == 2 * 2**30
    assert LIMITS.cpu_seconds == (600 + 60) * 3
    assert LIMITS.file_size == 100 * 2**20
    args = LIMITS.prlimit_args()
    assert args == [f"--as={2 * 2**30}", f"--cpu={660 * 3}", f"--fsize={100 * 2**20}", "--nofile=4096", "--core=0",
                    "--nproc=256"]
    unconfined = Limits.for_run(memory_gi=1, cpu_request=1, deadline_seconds=10, max_output_mb=1, confined=False)
    assert not any(a.startswith("--nproc") for a in unconfined.prlimit_args()), \
        "an unconfined run shares the worker's uid: its processes would count"


def test_unconfined_runs_get_rlimits_and_a_clean_environment():
    assert unconfined_command(LIMITS, "/usr/bin/prlimit", ARGV) == ["/usr/bin/prlimit", *LIMITS.prlimit_args(), "--",
                                                                    *ARGV]
    env = unconfined_env("/sumo", "/data/work/j1/run")
    assert env["HOME"] == "/data/work/j1/run" and "ADMIN_KEY" not in env and "DATABASE_URL" not in env


def test_sumo_finds_the_wheels_proj_data_sandboxed_or_not():
    """Without PROJ_DATA a geo-referenced network (bologna-acosta) logs "Cannot find proj.db"."""
    from core.executors.local import default_sumo_binary
    from core.executors.sandbox import sandbox_env
    from core.executors.sandbox_host import host_view

    view = host_view(default_sumo_binary())
    for env in (sandbox_env(view, "/jobs/j1"), unconfined_env(view.sumo_home, "/data/work/j1/run")):
        assert env["PROJ_DATA"] == env["PROJ_LIB"] == f"{view.sumo_home}/data/proj"
    assert "PROJ_DATA" not in unconfined_env("/no/such/sumo", "/run")


def test_every_run_leases_a_uid_of_its_own_machine_wide(tmp_path):
    """Two services on one machine (two slot pools) never give two runs one uid: the leases are the machine's."""
    from core.executors.local_slots import UidPool

    first, second = UidPool(5000, 3, tmp_path), UidPool(5000, 3, tmp_path)  # two services, one folder
    a, b, c = first.try_acquire(), second.try_acquire(), first.try_acquire()
    assert sorted(lease.uid for lease in (a, b, c)) == [5000, 5001, 5002]
    assert second.try_acquire() is None
    b.release()
    again = first.try_acquire()
    assert again.uid == 5001
    sandbox = Sandbox(tools=TOOLS, host=HOST, uids=first)
    box = sandbox.box(uid=again.uid, job_id="j", run_dir=Path("/r"), stats_dir=Path("/s"), config_folder=".",
                      limits=LIMITS)
    assert (box.uid, box.gid, box.workdir) == (5001, 5001, job_dir("j"))


def test_sumo_layout_of_the_wheel_binds_its_two_folders(tmp_path):
    site = tmp_path / "site-packages"
    (site / "sumo" / "bin").mkdir(parents=True)
    (site / "sumo" / "bin" / "sumo").write_text("")
    (site / "eclipse_sumo.libs").mkdir()
    home, dirs = sumo_layout(str(site / "sumo" / "bin" / "sumo"))
    assert home == str(site / "sumo") and dirs == (str(site / "sumo"), str(site / "eclipse_sumo.libs"))


def test_a_system_sumo_needs_nothing_beyond_usr():
    home, dirs = sumo_layout("/usr/bin/sumo")
    assert dirs == ()


def test_bwrap_missing_is_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    tools, why = find_tools()
    assert tools is None and "bwrap" in why and "bubblewrap" in why


# -- the runner's meters ---------------------------------------------------------------------------

def test_written_bytes_counts_outputs_in_blocks_not_inputs(tmp_path):
    run, stats = tmp_path / "run", tmp_path / "stats"
    run.mkdir(), stats.mkdir()
    (run / "in.xml").write_bytes(b"x" * 10_000)
    st = (run / "in.xml").stat()
    inputs = {"in.xml": [st.st_size, st.st_mtime_ns]}
    assert written_bytes([run, stats], inputs) == 0
    (run / "out.xml").write_bytes(b"y" * 5000)
    (run / "deep").mkdir()
    (run / "deep" / "empty").write_bytes(b"")
    (stats / "s.xml").write_bytes(b"z")
    os.symlink("/etc/passwd", run / "link")
    assert written_bytes([run, stats], inputs) == 8192 + 4096 + 4096 + 4096 + 4096


def test_the_log_pump_stops_at_its_cap_and_drains_the_rest():
    out = io.BytesIO()
    pump = LogPump(io.BufferedReader(io.BytesIO(b"a" * 300_000)), out, cap=100_000)
    pump.run()
    assert out.getvalue() == b"a" * 100_000 and pump.over_cap.is_set()
    under = io.BytesIO()
    pump = LogPump(io.BufferedReader(io.BytesIO(b"b" * 1000)), under, cap=100_000)
    pump.run()
    assert under.getvalue() == b"b" * 1000 and not pump.over_cap.is_set()


@pytest.mark.parametrize("code, confined, expected", [
    (-signal.SIGXCPU, False, signal.SIGXCPU), (128 + signal.SIGXFSZ, True, signal.SIGXFSZ),
    (128 + signal.SIGXFSZ, False, None), (1, True, None), (0, True, None),
])
def test_exit_signal(code, confined, expected):
    assert exit_signal(code, confined) == expected


def test_open_beneath_refuses_links_and_fifos(tmp_path):
    (tmp_path / "dir").mkdir()
    fd = open_beneath(tmp_path, "dir/log.txt")
    os.write(fd, b"ok")
    os.close(fd)
    assert (tmp_path / "dir" / "log.txt").read_bytes() == b"ok"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "up")
    os.symlink(outside / "x", tmp_path / "x.txt")
    os.mkfifo(tmp_path / "fifo.txt")
    for rel in ("up/log.txt", "x.txt", "fifo.txt", "../escape.txt"):
        with pytest.raises(OSError):
            open_beneath(tmp_path, rel)
    assert list(outside.iterdir()) == []

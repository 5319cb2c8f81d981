"""The node agent's container logs and termination messages, as a kubelet serves them: ``sinceTime``,
``limitBytes``, ``tailLines``, long lines written in pieces, rotation at containerLogMaxSize (``pods/log`` then
reads the current file only, a follower carries on across it), and ``terminationMessagePath``.

Every wait is a polled condition with a bound (``wait_for``), never a sleep.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client

from core.executors.kubernetes import pod_log
from devcluster.containerlog import parse_size, parse_timestamp
from devcluster.procs import wait_for
from tests.devcluster.test_cluster import IMAGE, pod_log as read_log, pod_phase

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]


def signalled_pod(name: str, script: str, signals: Path, **container) -> dict:
    """A pod running ``script`` with ``/sig`` (the host's ``signals`` directory) to wait on files the test makes."""
    signals.mkdir(parents=True, exist_ok=True)
    return {"metadata": {"name": name}, "spec": {
        "restartPolicy": "Never",
        "volumes": [{"name": "sig", "hostPath": {"path": str(signals)}}],
        "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "sig", "mountPath": "/sig"}], **container}]}}


def wait_file(n: int) -> str:
    return f"while [ ! -e /sig/{n} ]; do sleep 0.05; done"


def raw_log(api, ns: str, name: str, **query) -> bytes:
    """``pods/log`` with any parameter, ``sinceTime`` included (the generated client lacks it)."""
    return b"".join(pod_log.request(SimpleNamespace(api=api), ns, name, (5, 60), **query))


def finished(core, ns: str, name: str) -> str:
    return wait_for(f"pod {name} finished", lambda: pod_phase(core, ns, name) in ("Succeeded", "Failed")
                    and pod_phase(core, ns, name), 120)


def test_since_time_limit_bytes_and_tail_lines(api, namespace, tmp_path):
    core = client.CoreV1Api(api)
    script = f"echo one; {wait_file(1)}; echo two; {wait_file(2)}; echo three"
    core.create_namespaced_pod(namespace, signalled_pod("clock", script, tmp_path))
    stamps = {}
    for n, word in ((1, "one"), (2, "two")):
        text = wait_for(f"{word} logged", lambda: word.encode() in raw_log(api, namespace, "clock", timestamps=True)
                        and raw_log(api, namespace, "clock", timestamps=True), 60)
        stamps[word] = parse_timestamp(text.splitlines()[-1].split(b" ")[0])
        # the next line in a later second, so that a whole-second sinceTime tells them apart
        wait_for("the next second", lambda: time.time_ns() // 10**9 > stamps[word] // 10**9, 5, interval=0.05)
        (tmp_path / str(n)).touch()
    assert finished(core, namespace, "clock") == "Succeeded"

    def since(ns: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))

    assert raw_log(api, namespace, "clock", sinceTime=since(stamps["one"])) == b"one\ntwo\nthree\n"
    assert raw_log(api, namespace, "clock", sinceTime=since(stamps["two"])) == b"two\nthree\n"
    stamped = raw_log(api, namespace, "clock", sinceTime=since(stamps["two"]), timestamps=True).splitlines()
    assert [line.split(b" ", 1)[1] for line in stamped] == [b"two", b"three"]
    assert parse_timestamp(stamped[0].split(b" ")[0]) == stamps["two"]
    assert raw_log(api, namespace, "clock", sinceTime=since(time.time_ns() + 10**10)) == b""
    assert raw_log(api, namespace, "clock", limitBytes=5) == b"one\nt"
    assert raw_log(api, namespace, "clock", timestamps=True, limitBytes=10) == \
        raw_log(api, namespace, "clock", timestamps=True)[:10]  # the prefix counts
    assert raw_log(api, namespace, "clock", tailLines=2) == b"two\nthree\n"


def test_a_long_line_is_one_line_with_one_timestamp(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "long"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": IMAGE, "command": ["python3", "-c", "print('y' * 40000); print('end', end='')"]}]}})
    assert finished(core, namespace, "long") == "Succeeded"
    # written in 16 KiB records, as a CRI runtime does; served as the line it was (the last one ended, as containerd does)
    assert raw_log(api, namespace, "long") == b"y" * 40000 + b"\nend\n"
    stamped = raw_log(api, namespace, "long", timestamps=True)
    assert re.fullmatch(rb"\S+Z y{40000}\n\S+Z end\n", stamped), stamped[:80]


def test_the_log_rotates_at_container_log_max_size_and_a_follower_reads_on(api, cluster, namespace, tmp_path):
    core = client.CoreV1Api(api)
    lines = 130_000  # 100 bytes each: past the node's 10 MiB
    assert lines * 100 > parse_size(cluster.node.container_log_max_size)
    program = f"import sys\nfor i in range({lines}): sys.stdout.write('%08d %s\\n' % (i, 'x' * 90))"
    script = f"echo ready; {wait_file(1)}; python3 -c \"{program}\""
    core.create_namespaced_pod(namespace, signalled_pod("chatty", script, tmp_path))
    wait_for("pod chatty running", lambda: pod_phase(core, namespace, "chatty") != "Pending", 60)
    expected = b"ready\n" + b"".join(b"%08d %s\n" % (i, b"x" * 90) for i in range(lines))

    followed = bytearray()
    stream = pod_log.request(SimpleNamespace(api=api), namespace, "chatty", (5, 120), follow=True)
    for chunk in stream:
        followed += chunk
        if followed == b"ready\n":
            (tmp_path / "1").touch()  # the follower is there: now write past the rotation size
    assert bytes(followed) == expected  # across every rotation, nothing lost or repeated
    assert finished(core, namespace, "chatty") == "Succeeded"

    current = read_log(core, "chatty", namespace).encode()
    assert 0 < len(current) <= parse_size(cluster.node.container_log_max_size) < len(expected)
    assert expected.endswith(current) and current[:1] != b"x"  # the current file: whole lines, the newest
    uid = core.read_namespaced_pod("chatty", namespace).metadata.uid
    logs = cluster.workdir / "node" / "pods" / uid / "logs"
    rotated = sorted(p.name for p in logs.iterdir() if p.name.startswith("main.0.log."))
    assert rotated and len(rotated) <= 4, rotated  # containerLogMaxFiles 5: the current file and 4 rotated ones


def test_the_termination_message_is_reported_and_never_reaches_the_host(api, namespace):
    core = client.CoreV1Api(api)
    assert not os.path.exists("/dev/termination-log")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "told"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": IMAGE, "command": ["sh", "-c", "printf 'ran out of room' > /dev/termination-log; exit 2"]},
        {"name": "quiet", "image": IMAGE, "command": ["sh", "-c", "echo boom; exit 1"],
         "terminationMessagePolicy": "FallbackToLogsOnError"}]}})
    assert finished(core, namespace, "told") == "Failed"
    states = {s.name: s.state.terminated for s in core.read_namespaced_pod("told", namespace).status.container_statuses}
    assert (states["main"].exit_code, states["main"].message) == (2, "ran out of room")
    assert states["quiet"].message == "boom\n"  # nothing written, failed: the log's tail
    assert not os.path.exists("/dev/termination-log")  # the pod's /dev is its own

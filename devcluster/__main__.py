"""``python -m devcluster``: run the dev cluster in the foreground.

State (certs, etcd data, logs, admin kubeconfig) lives in ``<repo>/.devcluster``
(override with ``--workdir``) and is wiped at the next start.  Ctrl-C or
SIGTERM stops every component; if one of them dies the rest are stopped too
and the exit status is non-zero.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .cluster import Cluster, NodeSettings, kube_bin_dir


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    ap.add_argument("--workdir", type=Path, default=repo / ".devcluster")
    ap.add_argument("--no-node-agent", action="store_true")
    ap.add_argument("--node-cpu", default=NodeSettings.cpu)
    ap.add_argument("--node-memory", default=NodeSettings.memory)
    ap.add_argument("--node-pods", default=NodeSettings.pods)
    ap.add_argument("--container-log-max-size", default=NodeSettings.container_log_max_size,
                    help="the kubelet's containerLogMaxSize (e.g. 10Mi): container logs are rotated past it")
    ap.add_argument("-v", "--verbosity", type=int, default=1, help="klog -v for components")
    a = ap.parse_args(argv)

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)  # even if started with SIGINT ignored (`cmd &`)
    cl = Cluster(a.workdir, with_node_agent=not a.no_node_agent, verbosity=a.verbosity,
                 node=NodeSettings(cpu=a.node_cpu, memory=a.node_memory, pods=a.node_pods,
                                   container_log_max_size=a.container_log_max_size))
    print(f"devcluster: binaries from {kube_bin_dir()}, state in {cl.workdir}", flush=True)
    try:
        t0 = time.monotonic()
        cl.start()
        print(f"devcluster: ready in {time.monotonic() - t0:.1f}s at {cl.apiserver_url}\n"
              f"  export KUBECONFIG={cl.kubeconfig}\n  logs: {cl.logs}\n"
              "  Ctrl-C to stop", flush=True)
        while True:
            cl.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("devcluster: stopping", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - report, stop everything, fail
        print(f"devcluster: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        cl.stop()


if __name__ == "__main__":
    sys.exit(main())

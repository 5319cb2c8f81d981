"""``make run``: start the whole service in the foreground; Ctrl-C stops it all."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from devstack.stack import start_stack


def main() -> int:
    data_dir = Path(os.environ.get("DATA_DIR", ".data"))
    os.environ.setdefault("SUMO_K8_LOG_TO_CONSOLE", "1")
    print(f"sumo-k8: starting (data under {data_dir.resolve()}) ...", flush=True)
    stack = start_stack(data_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        "\n"
        f"  sumo-k8 is up:   {stack.url}   (API docs: {stack.url}/docs)\n"
        f"  admin key:       {stack.env['ADMIN_KEY']}   (header X-Admin-Key)\n"
        f"  executor:        {stack.env.get('EXECUTOR', 'local')}\n"
        f"  PostgreSQL:      {stack.env['DATABASE_URL']}\n"
        f"  Redis:           {stack.env['REDIS_URL']}\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    try:
        while not stop.wait(1):
            for name, proc in stack.procs.items():
                if proc.process.poll() is not None:
                    print(f"sumo-k8: {name} exited with {proc.process.returncode}; stopping", file=sys.stderr)
                    stop.set()
    finally:
        print("sumo-k8: stopping ...", flush=True)
        stack.stop()
        print("sumo-k8: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Entrypoint of the status watcher: ``python -m workers.watcher``.

Runs :class:`core.executors.kubernetes.watcher.Watcher` against the cluster
of KUBECONFIG, publishing StatusEvents through the message bus; several may
run, the Lease in CONTROLLER_NAMESPACE makes one of them active.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from core import gc_policy
from core.executors.kubernetes.client import api_client_from
from core.executors.kubernetes.lease import LeaderLease
from core.executors.kubernetes.watcher import Watcher
from core.messaging import MessageBus, get_broker
from core.services import tenants
from core.bootstrap import get_context
from core.settings import get_settings
from workers.logging_setup import configure_logging


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    api = api_client_from(settings)
    bus = MessageBus(get_broker(settings), settings.executor)
    identity = f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaderLease(api, settings.controller_namespace, identity)
    watcher = Watcher(api, bus.publish_status, resync_seconds=settings.watch_resync_seconds,
                      log_tail_lines=settings.log_tail_lines, lease=lease)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log = logging.getLogger(__name__)
    log.info("watcher %s starting", identity)
    gc_policy.settle()
    # At startup every tenant's objects are brought in line with the database (idempotent).
    try:
        log.info("asked the workers to reconcile %d tenants", tenants.reconcile_all(get_context()))
    except Exception:  # noqa: BLE001 — the watch matters more; reconciliation also runs on every PATCH
        log.exception("tenant reconciliation at startup failed")
    watcher.run(stop)


if __name__ == "__main__":
    main()

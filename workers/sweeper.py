"""The sweeper process: ``python -m workers.sweeper`` runs :func:`core.services.sweeper.sweep` forever.

Run one or several; the sweep is idempotent.
"""
from __future__ import annotations

import logging
import signal
import threading

from core import gc_policy
from core.bootstrap import get_context
from core.services.sweeper import sweep
from core.settings import get_settings
from core.unavailable import Unavailable
from workers.logging_setup import configure_logging

log = logging.getLogger("workers.sweeper")


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ctx = get_context()
    gc_policy.settle()
    log.info("sweeper running every %.1fs (grace %.1fs)", settings.sweep_interval_seconds, settings.sweep_grace_seconds)
    while not stop.is_set():
        try:
            sweep(ctx)
        except Unavailable as exc:  # e.g. PostgreSQL restarting: expected to pass, no traceback each interval
            log.warning("sweep skipped: %s", exc)
        except Exception:
            log.exception("sweep failed; retrying at the next interval")
        stop.wait(settings.sweep_interval_seconds)


if __name__ == "__main__":
    main()

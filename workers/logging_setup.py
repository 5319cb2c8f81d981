"""One log format for every process: time, level, process, logger, message."""
from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s [%(processName)s %(process)d] %(name)s: %(message)s",
    )
    for noisy in ("botocore", "urllib3", "azure", "google", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

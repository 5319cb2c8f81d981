"""API keys this process verified moments ago, so that ``POST /jobs`` can skip the key lookup.

Every endpoint but one looks its caller's key up in PostgreSQL on each request.
A submission may use an answer up to ``KEY_CACHE_SECONDS`` old because the
database checks again where it counts: the job row is inserted only while the
key is still its tenant's and the job still fits the tenant's per-job limits
(:mod:`core.services.submission`).  So a key regenerated, or limits lowered,
through another API process never lets a job in: such a request gets its 401
after its upload was read instead of before (a malformed form may get its 422
first).  The submission's own refusals (limits, archive) are never based on a
remembered row: the row is read again first.  Only keys that were found are
remembered; an unknown key is looked up (and refused) every time, before its
upload is read.

Why: the lookup (a hand-off to a thread, a pooled statement, and its
transaction in PostgreSQL) was a large share of a submission's CPU across
processes; ``bench.submit_throughput`` runs interleaved in one process, before
→ after: 219 → 264, 248 → 331, 324 → 382 /s.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable


class RecentKeys:
    """Tenant rows by key hash, each usable for ``ttl_seconds``; at most ``capacity``, oldest dropped first."""

    def __init__(self, ttl_seconds: float, capacity: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.capacity = capacity
        self._clock = clock
        self._rows: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()  # the event loop reads; threads running use cases write

    def get(self, key_hash: str) -> dict | None:
        entry = self._rows.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            with self._lock:
                self._rows.pop(key_hash, None)
            return None
        return entry[1]

    def remember(self, key_hash: str, tenant: dict) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._rows[key_hash] = (self._clock() + self.ttl, tenant)
            self._rows.move_to_end(key_hash)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop every row of ``tenant_id`` (its key or limits changed)."""
        with self._lock:
            for key_hash in [h for h, (_, row) in self._rows.items() if row["tenant_id"] == tenant_id]:
                del self._rows[key_hash]

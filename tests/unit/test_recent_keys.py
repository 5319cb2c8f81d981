"""RecentKeys: remembered tenant rows expire, are bounded, and are forgotten per tenant."""
from __future__ import annotations

from core.services.recent_keys import RecentKeys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_row_is_usable_for_ttl_seconds_then_gone():
    clock = Clock()
    keys = RecentKeys(30, clock=clock)
    keys.remember("h1", {"tenant_id": "a"})
    clock.now += 29.9
    assert keys.get("h1") == {"tenant_id": "a"}
    clock.now += 0.1
    assert keys.get("h1") is None
    assert keys.get("never-seen") is None


def test_remembering_again_restarts_the_ttl():
    clock = Clock()
    keys = RecentKeys(10, clock=clock)
    keys.remember("h1", {"tenant_id": "a", "max_cpu": 1})
    clock.now += 8
    keys.remember("h1", {"tenant_id": "a", "max_cpu": 2})
    clock.now += 8
    assert keys.get("h1") == {"tenant_id": "a", "max_cpu": 2}


def test_capacity_drops_the_oldest_first():
    keys = RecentKeys(30, capacity=2, clock=Clock())
    for h in ("h1", "h2", "h3"):
        keys.remember(h, {"tenant_id": h})
    assert keys.get("h1") is None
    assert keys.get("h2") == {"tenant_id": "h2"} and keys.get("h3") == {"tenant_id": "h3"}


def test_forget_tenant_drops_all_its_rows_only():
    keys = RecentKeys(30, clock=Clock())
    keys.remember("h1", {"tenant_id": "a"})
    keys.remember("h2", {"tenant_id": "a"})
    keys.remember("h3", {"tenant_id": "b"})
    keys.forget_tenant("a")
    assert keys.get("h1") is None and keys.get("h2") is None
    assert keys.get("h3") == {"tenant_id": "b"}


def test_ttl_zero_remembers_nothing():
    keys = RecentKeys(0, clock=Clock())
    keys.remember("h1", {"tenant_id": "a"})
    assert keys.get("h1") is None

"""Whether a pool can take more work: the inference extension's saturation rule.

A pool is saturated when none of its endpoints has fresh metrics with `waiting <= queue_threshold` and
`kv_usage <= kv_threshold`. Endpoints that never produced metrics (not scraped yet, or exposing none we
read) count as available: the router cannot tell, and holding back a pool of servers without metrics
forever would be worse than sending to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kthena_router.endpoints.state import EndpointStates
from kthena_router.snapshot import Endpoint


@dataclass(frozen=True, slots=True)
class Thresholds:
    queue: float = 5
    kv: float = 0.8

    def __post_init__(self) -> None:
        if self.queue < 0:
            raise ValueError(f"saturation queue threshold must be >= 0, got {self.queue}")
        if not 0.0 <= self.kv <= 1.0:
            raise ValueError(f"saturation KV threshold must be within 0..1, got {self.kv}")


def saturated(endpoints: Iterable[Endpoint], states: EndpointStates, now: float, limits: Thresholds) -> bool:
    by_key = states.by_key
    for endpoint in endpoints:
        state = by_key.get(endpoint.key)
        if state is None or not state.metered:
            return False
        if state.fresh(now) and state.waiting <= limits.queue and state.kv_usage <= limits.kv:
            return False
    return True


def headroom(endpoints: Iterable[Endpoint], states: EndpointStates, now: float, limits: Thresholds
             ) -> tuple[int, float]:
    """How many more requests the pool may take before it looks saturated, and the time of the oldest
    scrape that estimate rests on (requests released after it are not yet in the numbers)."""
    by_key = states.by_key
    room = 0
    oldest = now
    for endpoint in endpoints:
        state = by_key.get(endpoint.key)
        if state is None or not state.metered:
            room += int(limits.queue) + 1
            continue
        if state.fresh(now) and state.kv_usage <= limits.kv and state.waiting <= limits.queue:
            room += int(limits.queue - state.waiting) + 1
            oldest = min(oldest, state.updated_at)
    return room, oldest

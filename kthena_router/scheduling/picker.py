"""The picker interface, the in-flight counts and the simplest picker (least in flight).

The proxy owns the in-flight counts (`InFlight`): it increments them synchronously when it dispatches a
request and decrements them when the response ends, so a burst between two decisions is spread at once.
Pickers only read them. `on_busy` is told when an endpoint goes from none to one request in flight (the
scraper then reads an endpoint it was reading slowly while idle at once).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import Any, Protocol

from kthena_router.snapshot import Endpoint, EndpointKey, Pool


class InFlight:
    """Requests currently dispatched to each endpoint, counted by this process."""

    __slots__ = ("counts", "on_busy")

    def __init__(self) -> None:
        self.counts: dict[EndpointKey, int] = {}
        self.on_busy: Callable[[EndpointKey], None] | None = None

    def acquire(self, key: EndpointKey) -> None:
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if count == 1 and self.on_busy is not None:
            self.on_busy(key)

    def release(self, key: EndpointKey) -> None:
        left = self.counts.get(key, 0) - 1
        if left > 0:
            self.counts[key] = left
        else:
            self.counts.pop(key, None)

    def get(self, key: EndpointKey) -> int:
        return self.counts.get(key, 0)

    def total(self) -> int:
        return sum(self.counts.values())


class PickRequest:
    """What a picker may look at besides the pool: the model and the decoded body (None for bodyless calls).

    `context` is the picker's own per-request memo (built on the first pick, reused by retries)."""

    __slots__ = ("model", "payload", "headers", "context")

    def __init__(self, model: str | None, payload: dict | None, headers) -> None:
        self.model = model
        self.payload = payload
        self.headers = headers
        self.context: Any = None


class Picker(Protocol):
    def pick(self, pool: Pool, request: PickRequest, exclude: Collection[EndpointKey]) -> Endpoint | None:
        """The endpoint to try next, never one in `exclude`; None when no endpoint is left.

        May raise `errors.Overloaded` when every endpoint is ruled out as overloaded."""
        ...

    def served(self, request: PickRequest, endpoint: Endpoint) -> None:
        """`endpoint` answered `request` (response headers received, status < 500)."""
        ...

    def finished(self, request: PickRequest, endpoint: Endpoint, rec: Any) -> None:
        """`endpoint` finished answering `request`; `rec` is its `RequestRecord` (timings, tokens)."""
        ...


class LeastInFlightPicker:
    """The endpoint with the fewest requests in flight from this router; ties broken at random."""

    def __init__(self, inflight: InFlight, rng: random.Random | None = None) -> None:
        self.inflight = inflight
        self.rng = rng or random.Random()

    def pick(self, pool: Pool, request: PickRequest, exclude: Collection[EndpointKey]) -> Endpoint | None:
        counts = self.inflight.counts
        best: list[Endpoint] = []
        best_count = -1
        for endpoint in pool.endpoints:
            if exclude and endpoint.key in exclude:
                continue
            count = counts.get(endpoint.key, 0)
            if best_count < 0 or count < best_count:
                best, best_count = [endpoint], count
            elif count == best_count:
                best.append(endpoint)
        if not best:
            return None
        return best[0] if len(best) == 1 else self.rng.choice(best)

    def served(self, request: PickRequest, endpoint: Endpoint) -> None:
        return None

    def finished(self, request: PickRequest, endpoint: Endpoint, rec: Any) -> None:
        return None

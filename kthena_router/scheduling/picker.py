"""The picker interface, the in-flight counts and the simplest picker (least in flight).

The proxy owns the in-flight counts (`InFlight`): it increments them synchronously when it dispatches a
request and decrements them when the response ends, so a burst between two decisions is spread at once.
Pickers only read them.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any, Protocol

from kthena_router.snapshot import Endpoint, EndpointKey, Pool


class InFlight:
    """Requests currently dispatched to each endpoint, counted by this process."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[EndpointKey, int] = {}

    def acquire(self, key: EndpointKey) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

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

"""Passive outlier detection: endpoints that keep failing real requests are left out of picking for a while.

The proxy reports the outcome of every exchange with an endpoint: a failure is a connect error, a reset, a
timeout, a malformed response or a 5xx; anything else is a success. A client that goes away is neither.
After `consecutive_failures` failures in a row an endpoint is ejected for `base_ejection` seconds, times
2^(n-1) for its n-th ejection in a row, at most 10x. When the time is up it is picked again, on probation:
its next failure ejects it again at once, a success clears its record. Failures reported while it is out
(requests sent before the ejection) do not extend the ejection.

Per pool, never more than `max_ejection_percent` of its endpoints are left out (rounded down, but at least
one while the percent is above 0; the earliest ejections are the ones honoured), and when nothing would be
left the pool is used whole: a fleet that is all failing is better tried than refused. 0 failures or 0
percent turns detection off.

The detector keeps no task and reads the clock only when asked; `excluded` is on the request path and costs
one check while nothing is ejected anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection

from kthena_router.snapshot import EndpointKey, Pool

log = logging.getLogger(__name__)

MAX_MULTIPLIER = 10  # an ejection lasts at most this many times the base
_POOLS_CACHED = 256  # pools whose key sets are kept; more than any Snapshot holds in practice


class _Record:
    __slots__ = ("failures", "ejections", "until")

    def __init__(self) -> None:
        self.failures = 0  # in a row
        self.ejections = 0  # in a row, without a success between
        self.until = 0.0  # ejected until this clock reading (0: never ejected)


class OutlierDetector:
    """Outcomes in, the endpoints to leave out of a pick out. One per process, shared by every pool."""

    def __init__(self, consecutive_failures: int, base_ejection: float, max_ejection_percent: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[EndpointKey, bool], None] | None = None) -> None:
        if base_ejection < 0 or not 0 <= max_ejection_percent <= 100:
            raise ValueError("outlier detection needs base_ejection >= 0 and 0 <= max_ejection_percent <= 100")
        self.consecutive_failures = consecutive_failures
        self.base_ejection = base_ejection
        self.max_ejection_percent = max_ejection_percent
        self.clock = clock
        self.on_change = on_change  # (endpoint, ejected): for the metrics gauge and counter
        self._records: dict[EndpointKey, _Record] = {}
        # Ejections in force, endpoint -> end, in the order they began (the first ones win a pool's cap).
        self._ejected: dict[EndpointKey, float] = {}
        self._next_end = math.inf  # the earliest end in `_ejected`
        self._pools: dict[int, tuple[Pool, frozenset[EndpointKey]]] = {}  # id(pool) -> (pool, its keys)
        self.ejections_total = 0

    @property
    def enabled(self) -> bool:
        return self.consecutive_failures > 0 and self.max_ejection_percent > 0

    # --- outcomes ------------------------------------------------------------------------------------

    def success(self, key: EndpointKey) -> None:
        record = self._records.get(key)
        if record is None:
            return
        record.failures = 0
        if record.until <= self.clock():
            del self._records[key]  # not ejected now: its next failure counts from zero again

    def failure(self, key: EndpointKey) -> None:
        if not self.enabled:
            return
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        now = self.clock()
        if record.until > now:
            return  # already out; failures of requests sent before the ejection do not extend it
        record.failures += 1
        on_probation = record.ejections > 0
        if record.failures < self.consecutive_failures and not on_probation:
            return
        record.ejections += 1
        seconds = self.base_ejection * min(2 ** (record.ejections - 1), MAX_MULTIPLIER)
        record.until = until = now + seconds
        record.failures = 0
        self._ejected.pop(key, None)
        self._ejected[key] = until
        if until < self._next_end:
            self._next_end = until
        self.ejections_total += 1
        log.warning("endpoint %s:%d left out of picking for %gs (%s)", key.ip, key.port, seconds,
                    "failed again after an ejection" if on_probation else "consecutive failures")
        if self.on_change is not None:
            self.on_change(key, True)

    def forget(self, alive: Collection[EndpointKey]) -> None:
        """Drop what is known about endpoints not in `alive` (they left every pool); called on every new
        Snapshot, so it also drops the key sets of the pools it replaced."""
        self._pools.clear()
        for key in [k for k in self._records if k not in alive]:
            del self._records[key]
            if self._ejected.pop(key, None) is not None and self.on_change is not None:
                self.on_change(key, False)
        self._next_end = min(self._ejected.values(), default=math.inf)

    # --- picking -------------------------------------------------------------------------------------

    def excluded(self, pool: Pool, tried: Collection[EndpointKey]) -> Collection[EndpointKey]:
        """What a pick in `pool` must skip: `tried`, plus the pool's ejected endpoints within its cap.

        Returns `tried` itself (no allocation) when no ejection applies."""
        if not self._ejected:
            return tried
        now = self.clock()
        if now >= self._next_end:
            self._expire(now)
            if not self._ejected:
                return tried
        members = self._members(pool)
        out = [key for key in self._ejected if key in members]  # in ejection order
        if not out:
            return tried
        size = len(members)
        limit = size * self.max_ejection_percent // 100 or 1
        if len(out) > limit:
            del out[limit:]
        if not tried:
            return tried if len(out) >= size else out  # everything out: fail open
        skip = set(tried)
        skip.update(out)
        return tried if len(skip) >= size else skip

    def expire(self) -> None:
        """End the ejections whose time is up now, reporting each to `on_change` (run before the metrics
        are read, so the ejected gauge drops to 0 on time even while no request picks in that pool)."""
        if self._ejected:
            now = self.clock()
            if now >= self._next_end:
                self._expire(now)

    def is_ejected(self, key: EndpointKey, now: float | None = None) -> bool:
        """Whether `key` is ejected at `now` (default: the clock), before any pool's cap is applied."""
        until = self._ejected.get(key)
        return until is not None and until > (self.clock() if now is None else now)

    def ejected_keys(self) -> list[EndpointKey]:
        """The endpoints ejected now (for the debug dump), in the order they were ejected."""
        if self._ejected:
            self._expire(self.clock())
        return list(self._ejected)

    def _members(self, pool: Pool) -> frozenset[EndpointKey]:
        """The endpoint keys of `pool`, built once per Pool object (a new Snapshot brings new ones)."""
        cached = self._pools.get(id(pool))
        if cached is not None and cached[0] is pool:
            return cached[1]
        if len(self._pools) >= _POOLS_CACHED:
            self._pools.clear()
        members = frozenset(e.key for e in pool.endpoints)
        self._pools[id(pool)] = (pool, members)
        return members

    def _expire(self, now: float) -> None:
        """End the ejections whose time is up (each is reported to `on_change`)."""
        ended = [key for key, until in self._ejected.items() if until <= now]
        for key in ended:
            del self._ejected[key]
            if self.on_change is not None:
                self.on_change(key, False)
        self._next_end = min(self._ejected.values(), default=math.inf)

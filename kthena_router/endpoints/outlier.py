"""Passive outlier detection: endpoints that keep failing real requests are left out of picking for a while.

The proxy reports the outcome of every exchange: a failure is a connect error, a reset, a timeout, a
malformed response or a 5xx; anything else is a success. After `consecutive_failures` failures in a row an
endpoint is ejected for `base_ejection` seconds, doubled for each ejection in a row (up to 10x). When the
time is up it is picked again; one more failure ejects it again, a success clears its record.

Never more than `max_ejection_percent` of a pool is left out, and when nothing would be left the pool is
used whole (failing open: a fleet that is all failing is better tried than refused). With no ejections
in force, `excluded` costs one check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from kthena_router.snapshot import EndpointKey, Pool

log = logging.getLogger(__name__)

_MAX_MULTIPLIER = 10


class _Record:
    __slots__ = ("failures", "ejections", "until")

    def __init__(self) -> None:
        self.failures = 0  # in a row
        self.ejections = 0  # in a row, without a success between
        self.until = 0.0  # ejected until this clock reading


class OutlierDetector:
    def __init__(self, consecutive_failures: int, base_ejection: float, max_ejection_percent: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[EndpointKey, bool], None] | None = None) -> None:
        self.consecutive_failures = consecutive_failures
        self.base_ejection = base_ejection
        self.max_ejection_percent = max_ejection_percent
        self.clock = clock
        self.on_change = on_change  # (endpoint, ejected) for metrics
        self._records: dict[EndpointKey, _Record] = {}
        self._ejected: dict[EndpointKey, float] = {}  # endpoint -> until
        self.ejections_total = 0

    @property
    def enabled(self) -> bool:
        return self.consecutive_failures > 0

    def success(self, key: EndpointKey) -> None:
        record = self._records.get(key)
        if record is not None:
            record.failures = 0
            if not record.until or record.until <= self.clock():
                del self._records[key]

    def failure(self, key: EndpointKey) -> None:
        if self.consecutive_failures <= 0:
            return
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        now = self.clock()
        if record.until > now:
            return  # already out; failures of requests sent before the ejection do not extend it
        record.failures += 1
        on_probation = record.ejections > 0 and record.until > 0.0
        if record.failures >= self.consecutive_failures or on_probation:
            record.ejections += 1
            multiplier = min(2 ** (record.ejections - 1), _MAX_MULTIPLIER)
            record.until = now + self.base_ejection * multiplier
            record.failures = 0
            self._ejected[key] = record.until
            self.ejections_total += 1
            log.warning("endpoint %s:%d failed %s; left out of picking for %gs", key.ip, key.port,
                        "again after its ejection" if on_probation else
                        f"{self.consecutive_failures} times in a row", self.base_ejection * multiplier)
            if self.on_change is not None:
                self.on_change(key, True)

    def excluded(self, pool: Pool, tried: Collection[EndpointKey]) -> Collection[EndpointKey]:
        """`tried` plus the endpoints of `pool` that are ejected now (within the pool-wide limits)."""
        if not self._ejected:
            return tried
        now = self.clock()
        for key, until in list(self._ejected.items()):
            if until <= now:
                del self._ejected[key]
                if self.on_change is not None:
                    self.on_change(key, False)
        if not self._ejected:
            return tried
        out = [e.key for e in pool.endpoints if e.key in self._ejected]
        if not out:
            return tried
        limit = len(pool.endpoints) * self.max_ejection_percent // 100
        if limit < len(out):
            out.sort(key=self._ejected.__getitem__, reverse=True)  # keep those ejected for longest
            out = out[:limit]
        remaining = [e for e in pool.endpoints if e.key not in tried and e.key not in out]
        if not remaining:
            return tried  # fail open
        return set(tried).union(out)

    def ejected_keys(self) -> list[EndpointKey]:
        now = self.clock()
        return [key for key, until in self._ejected.items() if until > now]

    def is_ejected(self, key: EndpointKey) -> bool:
        until = self._ejected.get(key)
        return until is not None and until > self.clock()

    def forget(self, alive: Collection[EndpointKey]) -> None:
        """Drop the records of endpoints that left every pool."""
        for key in [k for k in self._records if k not in alive]:
            del self._records[key]
            if self._ejected.pop(key, None) is not None and self.on_change is not None:
                self.on_change(key, False)

"""Background scraping of every endpoint's `/metrics` and `/v1/models` into `EndpointStates`.

One task per endpoint (keyed by address; an endpoint in several pools is scraped once), started and
stopped by `sync` as Snapshots add and remove endpoints. Each task GETs `/metrics` and, less often,
`/v1/models` over its own keep-alive connection (`endpoints/http.py`, about half the CPU per request of a
general client), so scraping never shares a connection or a limit with the request path and never blocks it.

The interval adapts, so the cost follows the traffic (`bench/scheduling/scrape_cost.py` measures it):
- an endpoint with work (running or waiting requests) or whose numbers moved is read every `interval`;
- a quiet one (nothing running or waiting, numbers as before) is read at twice the previous gap each
  time, up to `max_interval` (10 x `interval`, never more than a quarter of `stale_after`, so its numbers
  stay fresh), each gap jittered by up to 10 %; failing scrapes back off the same way;
- with `max_rate` set, busy endpoints together are read at most that many times a second: with B busy
  endpoints the gap is B / `max_rate` when that exceeds `interval`, but never more than `max_interval`
  (fresh numbers win over the cap), so a large fleet costs a bounded share of the router's CPU;
- `wake(key)` (the router dispatching to an endpoint that had nothing in flight) ends the wait at once;
- an exposition byte-identical to the previous one is not parsed again;
- `/v1/models` is read every `models_interval`, and up to 5 x that while its answer does not change;
- TTFT/TPOT histograms are parsed only while `read_latency` is set (a plugin that uses them is enabled).
A failed scrape is counted and the endpoint's numbers go stale after `stale_after`; nothing is retried
faster than `interval`. `on_update` is called after each good scrape (admission re-checks saturation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable

import orjson

from kthena_router.endpoints.dialects import Dialect, HistogramDelta, dialect_for, parse_metrics
from kthena_router.endpoints.http import ScrapeConnection, ScrapeError
from kthena_router.endpoints.state import EndpointState, EndpointStates
from kthena_router.snapshot import Endpoint, EndpointKey

log = logging.getLogger(__name__)

# How far /v1/models backs off while its answer stays the same, as a multiple of `models_interval`.
MODELS_BACKOFF = 5.0


def _without_latency(dialect: Dialect) -> Dialect:
    return dataclasses.replace(dialect, ttft="", tpot="", tpot_old="")


class _Target:
    """What one scraper task needs: its state, dialects, histogram trackers and its rhythm."""

    __slots__ = ("endpoint", "state", "full", "lean", "ttft", "tpot", "task", "conn", "delay", "busy",
                 "sleeper", "last_body", "models_body", "models_delay")

    def __init__(self, endpoint: Endpoint, state: EndpointState, timeout: float, interval: float) -> None:
        self.endpoint = endpoint
        self.conn = ScrapeConnection(endpoint.key.ip, endpoint.key.port, endpoint.address, timeout)
        self.state = state
        self.full: Dialect = dialect_for(endpoint.engine)
        self.lean = _without_latency(self.full)
        self.ttft = HistogramDelta()
        self.tpot = HistogramDelta()
        self.task: asyncio.Task[None] | None = None
        self.delay = interval  # the gap before the next /metrics scrape
        self.busy = False  # counted in Scraper._busy
        self.sleeper: asyncio.Future[None] | None = None  # set while waiting for the next scrape
        self.last_body = b""  # the last exposition that parsed well
        self.models_body = b""
        self.models_delay = 0.0


class Scraper:
    def __init__(self, states: EndpointStates, *, interval: float = 0.05, timeout: float | None = None,
                 max_interval: float | None = None, models_interval: float = 1.0,
                 max_rate: float = 0.0, on_update: Callable[[], None] | None = None,
                 read_latency: bool = True, rng: random.Random | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"scrape interval must be > 0, got {interval}")
        if max_rate < 0:
            raise ValueError(f"scrape rate limit must be >= 0, got {max_rate}")
        if max_interval is None:
            max_interval = min(10 * interval, states.stale_after / 4)
        self.states = states
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        # Short, but never shorter than a slow server needs to render a large exposition.
        self.timeout = timeout if timeout is not None else max(0.25, min(1.0, states.stale_after / 2))
        self.models_interval = models_interval
        self.max_rate = max_rate  # busy scrapes per second over all endpoints; 0: no limit
        self._busy = 0  # endpoints read at the busy rhythm
        self.on_update = on_update
        self.rng = rng or random.Random()
        self._read_latency = read_latency
        self._targets: dict[EndpointKey, _Target] = {}
        self._closed = False

    @property
    def read_latency(self) -> bool:
        """Whether TTFT/TPOT histograms are parsed (only least-latency reads them)."""
        return self._read_latency

    @read_latency.setter
    def read_latency(self, value: bool) -> None:
        if value == self._read_latency:
            return
        self._read_latency = value
        for target in self._targets.values():  # start again from the totals the next parse sees
            target.ttft, target.tpot = HistogramDelta(), HistogramDelta()
            target.state.ttft = target.state.tpot = 0.0
            target.last_body = b""

    def sync(self, endpoints: Iterable[Endpoint]) -> None:
        """Scrape exactly these endpoints: start tasks for new ones, stop those that left."""
        if self._closed:
            return
        wanted: dict[EndpointKey, Endpoint] = {}
        for endpoint in endpoints:
            wanted.setdefault(endpoint.key, endpoint)
        for key in [k for k in self._targets if k not in wanted]:
            self._drop(self._targets.pop(key))
        for key, endpoint in wanted.items():
            target = self._targets.get(key)
            if target is not None and target.endpoint.engine == endpoint.engine:
                continue
            if target is not None:  # the engine label changed
                self._drop(target)
            state = self.states.add(key, endpoint.engine or "vllm")
            target = self._targets[key] = _Target(endpoint, state, self.timeout, self.interval)
            target.task = asyncio.create_task(self._run(target), name=f"scrape {endpoint.address}")
            target.task.add_done_callback(self._task_done)

    def _drop(self, target: _Target) -> None:
        if target.task is not None:
            target.task.cancel()
        target.conn.close()
        self._set_busy(target, False)
        self.states.remove(target.endpoint.key)

    def _set_busy(self, target: _Target, busy: bool) -> None:
        if target.busy != busy:
            target.busy = busy
            self._busy += 1 if busy else -1

    def busy_gap(self) -> float:
        """The gap between two scrapes of a busy endpoint: `interval`, stretched by the rate limit."""
        if self.max_rate <= 0:
            return self.interval
        return min(max(self.interval, self._busy / self.max_rate), self.max_interval)

    def wake(self, key: EndpointKey) -> None:
        """Work was just sent to `key`: if its scraper waits longer than `interval`, scrape it now."""
        target = self._targets.get(key)
        if target is None or target.busy or target.delay <= self.interval:
            return
        target.delay = self.busy_gap()
        sleeper = target.sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("scraper task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def endpoints(self) -> frozenset[EndpointKey]:
        return frozenset(self._targets)

    async def close(self) -> None:
        self._closed = True
        targets = list(self._targets.values())
        self._targets.clear()
        self._busy = 0
        tasks = [t.task for t in targets if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in targets:
            target.conn.close()

    async def _run(self, target: _Target) -> None:
        # Spread the first scrapes of many endpoints over one interval instead of a burst every tick.
        await self._sleep(target, self.rng.random() * self.interval)
        interval, max_interval = self.interval, self.max_interval
        next_models = 0.0
        while True:
            started = time.monotonic()
            if started >= next_models:
                if await self._scrape_models(target):
                    target.models_delay = self.models_interval
                else:
                    target.models_delay = min(max(target.models_delay, self.models_interval) * 2,
                                              self.models_interval * MODELS_BACKOFF)
                next_models = started + target.models_delay
            if await self.scrape_once(target) == "busy":
                self._set_busy(target, True)
                target.delay = gap = self.busy_gap()
            else:  # quiet or failed; jittered so that endpoints backing off together do not stay in step
                self._set_busy(target, False)
                target.delay = min(target.delay * 2, max_interval)
                gap = min(target.delay * (0.9 + 0.2 * self.rng.random()), max_interval)
            elapsed = time.monotonic() - started
            await self._sleep(target, max(gap - elapsed, interval * 0.2))

    @staticmethod
    async def _sleep(target: _Target, seconds: float) -> None:
        """Like asyncio.sleep, but `wake` can end it early."""
        loop = asyncio.get_running_loop()
        sleeper = target.sleeper = loop.create_future()
        timer = loop.call_later(seconds, _done, sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            target.sleeper = None

    async def scrape_once(self, target: _Target) -> str:
        """One /metrics scrape: "busy" (work there, or numbers moved), "quiet" or "failed"."""
        state = target.state
        try:
            status, body = await target.conn.get("/metrics")
        except ScrapeError as exc:
            self._failed(target, f"http://{target.endpoint.address}/metrics: {exc}")
            return "failed"
        if status != 200:
            self._failed(target, f"http://{target.endpoint.address}/metrics: HTTP {status}")
            return "failed"
        if body == target.last_body:  # nothing changed at all: same numbers, no need to parse
            moved = False
        else:
            parsed = parse_metrics(body.decode("utf-8", "replace"), target.full if self._read_latency
                                   else target.lean)
            if parsed.waiting is None and parsed.running is None and parsed.kv_usage is None:
                self._failed(target, f"http://{target.endpoint.address}/metrics: none of the "
                                     f"{target.full.engine} metrics is exposed")
                return "failed"
            target.last_body = body
            moved = False
            if parsed.waiting is not None and parsed.waiting != state.waiting:
                state.waiting, moved = parsed.waiting, True
            if parsed.running is not None and parsed.running != state.running:
                state.running, moved = parsed.running, True
            if parsed.kv_usage is not None and parsed.kv_usage != state.kv_usage:
                state.kv_usage, moved = parsed.kv_usage, True
            if parsed.ttft is not None:
                state.ttft = target.ttft.update(*parsed.ttft)
            if parsed.tpot is not None:
                state.tpot = target.tpot.update(*parsed.tpot)
            if parsed.lora is not None and parsed.lora != state.lora:
                state.lora, moved = parsed.lora, True
        state.updated_at = time.monotonic()
        state.scrapes += 1
        if state.failures:
            log.info("metrics of %s are back after %d failed scrapes", target.endpoint.address, state.failures)
            state.failures = 0
        if self.on_update is not None:
            self.on_update()
        return "busy" if moved or state.waiting > 0 or state.running > 0 else "quiet"

    def _failed(self, target: _Target, message: str) -> None:
        target.last_body = b""
        state = target.state
        state.failures += 1
        state.last_error = message
        if state.failures == 1:
            log.warning("scrape failed: %s", message)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("scrape failed (%d in a row): %s", state.failures, message)

    async def _scrape_models(self, target: _Target) -> bool:
        """Read /v1/models; True when its answer changed (or could not be read, to try again soon)."""
        try:
            status, body = await target.conn.get("/v1/models")
            if status != 200:
                return True
            if body == target.models_body:
                return False
            data = orjson.loads(body).get("data")
        except (ScrapeError, orjson.JSONDecodeError, AttributeError):
            return True
        if not isinstance(data, list):
            return True
        target.models_body = body
        models: set[str] = set()
        adapters: set[str] = set()
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            models.add(item["id"])
            if item.get("parent"):
                adapters.add(item["id"])
        target.state.models = frozenset(models)
        target.state.adapters = frozenset(adapters)
        return True


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


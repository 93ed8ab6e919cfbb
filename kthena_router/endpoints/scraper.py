"""Background scraping of every endpoint's `/metrics` and `/v1/models` into `EndpointStates`.

One task per endpoint (keyed by address; an endpoint in several pools is scraped once), started and
stopped by `sync` as Snapshots add and remove endpoints. Each task GETs `/metrics` every `interval` with a
short timeout and `/v1/models` every `models_interval` over its own keep-alive connection
(`endpoints/http.py`, about half the CPU per request of a general client), so scraping never
shares a connection or a limit with the request path and never blocks it. A failed scrape is counted and
the endpoint's numbers go stale after `stale_after`; nothing is retried faster than `interval`.
`on_update` is called after each good scrape (admission uses it to re-check saturation).
"""

from __future__ import annotations

import asyncio
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


class _Target:
    """What one scraper task needs: its state, dialect and histogram trackers."""

    __slots__ = ("endpoint", "state", "dialect", "ttft", "tpot", "task", "conn")

    def __init__(self, endpoint: Endpoint, state: EndpointState, timeout: float) -> None:
        self.endpoint = endpoint
        self.conn = ScrapeConnection(endpoint.key.ip, endpoint.key.port, endpoint.address, timeout)
        self.state = state
        self.dialect: Dialect = dialect_for(endpoint.engine)
        self.ttft = HistogramDelta()
        self.tpot = HistogramDelta()
        self.task: asyncio.Task[None] | None = None


class Scraper:
    def __init__(self, states: EndpointStates, *, interval: float = 0.05, timeout: float | None = None,
                 models_interval: float = 1.0, on_update: Callable[[], None] | None = None,
                 rng: random.Random | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"scrape interval must be > 0, got {interval}")
        self.states = states
        self.interval = interval
        # Short, but never shorter than a slow server needs to render a large exposition.
        self.timeout = timeout if timeout is not None else max(0.25, min(1.0, states.stale_after / 2))
        self.models_interval = models_interval
        self.on_update = on_update
        self.rng = rng or random.Random()
        self._targets: dict[EndpointKey, _Target] = {}
        self._closed = False

    def sync(self, endpoints: Iterable[Endpoint]) -> None:
        """Scrape exactly these endpoints: start tasks for new ones, stop those that left."""
        if self._closed:
            return
        wanted: dict[EndpointKey, Endpoint] = {}
        for endpoint in endpoints:
            wanted.setdefault(endpoint.key, endpoint)
        for key in [k for k in self._targets if k not in wanted]:
            target = self._targets.pop(key)
            if target.task is not None:
                target.task.cancel()
            target.conn.close()
            self.states.remove(key)
        for key, endpoint in wanted.items():
            target = self._targets.get(key)
            if target is not None and target.endpoint.engine == endpoint.engine:
                continue
            if target is not None and target.task is not None:  # the engine label changed
                target.task.cancel()
                target.conn.close()
                self.states.remove(key)
            state = self.states.add(key, endpoint.engine or "vllm")
            target = self._targets[key] = _Target(endpoint, state, self.timeout)
            target.task = asyncio.create_task(self._run(target), name=f"scrape {endpoint.address}")
            target.task.add_done_callback(self._task_done)

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
        tasks = [t.task for t in targets if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in targets:
            target.conn.close()

    async def _run(self, target: _Target) -> None:
        # Spread the first scrapes of many endpoints over one interval instead of a burst every tick.
        await asyncio.sleep(self.rng.random() * self.interval)
        next_models = 0.0
        while True:
            started = time.monotonic()
            if started >= next_models:
                next_models = started + self.models_interval
                await self._scrape_models(target)
            await self.scrape_once(target)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.interval - elapsed, self.interval * 0.2))

    async def scrape_once(self, target: _Target) -> bool:
        state = target.state
        url = f"http://{target.endpoint.address}/metrics"
        try:
            status, body = await target.conn.get("/metrics")
        except ScrapeError as exc:
            self._failed(state, f"{url}: {exc}")
            return False
        if status != 200:
            self._failed(state, f"{url}: HTTP {status}")
            return False
        text = body.decode("utf-8", "replace")
        parsed = parse_metrics(text, target.dialect)
        if parsed.waiting is None and parsed.running is None and parsed.kv_usage is None:
            self._failed(state, f"{url}: none of the {target.dialect.engine} metrics is exposed")
            return False
        now = time.monotonic()
        if parsed.waiting is not None:
            state.waiting = parsed.waiting
        if parsed.running is not None:
            state.running = parsed.running
        if parsed.kv_usage is not None:
            state.kv_usage = parsed.kv_usage
        if parsed.ttft is not None:
            state.ttft = target.ttft.update(*parsed.ttft)
        if parsed.tpot is not None:
            state.tpot = target.tpot.update(*parsed.tpot)
        if parsed.lora is not None:
            state.lora = parsed.lora
        state.updated_at = now
        state.scrapes += 1
        if state.failures:
            log.info("metrics of %s are back after %d failed scrapes", target.endpoint.address, state.failures)
            state.failures = 0
        if self.on_update is not None:
            self.on_update()
        return True

    def _failed(self, state: EndpointState, message: str) -> None:
        state.failures += 1
        state.last_error = message
        if state.failures == 1:
            log.warning("scrape failed: %s", message)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("scrape failed (%d in a row): %s", state.failures, message)

    async def _scrape_models(self, target: _Target) -> None:
        try:
            status, body = await target.conn.get("/v1/models")
            if status != 200:
                return
            data = orjson.loads(body).get("data")
        except (ScrapeError, orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(data, list):
            return
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


"""Live state of one model-server endpoint, as the scraper last saw it.

The scraper is the only writer (one task per endpoint, on the event loop); the scheduler reads the fields
while scoring, without locks or awaits. Values are only meaningful while `fresh(now)` holds: an endpoint
whose scrapes fail keeps its last numbers but stops counting as known after `stale_after` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.snapshot import EndpointKey


@dataclass(frozen=True, slots=True)
class LoraInfo:
    """The newest `lora_requests_info` series: adapter slots and the adapters running or waiting."""

    max_lora: int = 0
    running: frozenset[str] = frozenset()
    waiting: frozenset[str] = frozenset()


NO_LORA = LoraInfo()


class EndpointState:
    """The scraped numbers of one endpoint. `updated_at` is `time.monotonic()` of the last good scrape."""

    __slots__ = ("key", "engine", "stale_after", "updated_at", "waiting", "running", "kv_usage", "ttft",
                 "tpot", "lora", "models", "adapters", "scrapes", "failures", "last_error")

    def __init__(self, key: EndpointKey, engine: str = "vllm", stale_after: float = 2.0) -> None:
        self.key = key
        self.engine = engine
        self.stale_after = stale_after
        self.updated_at = -1.0  # never scraped successfully
        self.waiting = 0.0
        self.running = 0.0
        self.kv_usage = 0.0  # 0..1
        self.ttft = 0.0  # seconds, mean over the last scrape interval with observations; 0 = unknown
        self.tpot = 0.0
        self.lora = NO_LORA
        self.models: frozenset[str] = frozenset()  # every id in /v1/models
        self.adapters: frozenset[str] = frozenset()  # the ids that are LoRA adapters (have a parent)
        self.scrapes = 0
        self.failures = 0
        self.last_error = ""

    def fresh(self, now: float) -> bool:
        """True when the last good scrape is younger than `stale_after` seconds."""
        return self.updated_at >= 0 and now - self.updated_at <= self.stale_after

    @property
    def metered(self) -> bool:
        """True once a scrape has succeeded: the endpoint exposes metrics we understand."""
        return self.updated_at >= 0

    def describe(self, now: float) -> dict:
        return {
            "engine": self.engine, "fresh": self.fresh(now),
            "age_seconds": round(now - self.updated_at, 3) if self.metered else None,
            "waiting": self.waiting, "running": self.running, "kv_usage": self.kv_usage,
            "ttft_seconds": self.ttft, "tpot_seconds": self.tpot,
            "lora": {"max_lora": self.lora.max_lora, "running": sorted(self.lora.running),
                     "waiting": sorted(self.lora.waiting)},
            "models": sorted(self.models), "scrapes": self.scrapes, "failures": self.failures,
            "last_error": self.last_error,
        }


class EndpointStates:
    """The state of every endpoint being scraped, by key. Entries come and go with the scraper."""

    __slots__ = ("by_key", "stale_after")

    def __init__(self, stale_after: float = 2.0) -> None:
        self.by_key: dict[EndpointKey, EndpointState] = {}
        self.stale_after = stale_after

    def get(self, key: EndpointKey) -> EndpointState | None:
        return self.by_key.get(key)

    def add(self, key: EndpointKey, engine: str) -> EndpointState:
        state = self.by_key.get(key)
        if state is None:
            state = self.by_key[key] = EndpointState(key, engine, self.stale_after)
        return state

    def remove(self, key: EndpointKey) -> None:
        self.by_key.pop(key, None)

"""Endpoints, pools and scraped state built directly, as the scraper would leave them."""

import random
import time

import pytest

from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.state import EndpointState, EndpointStates, LoraInfo
from kthena_router.scheduling.framework import Context, PluginEnv
from kthena_router.scheduling.picker import InFlight
from kthena_router.snapshot import Endpoint, EndpointKey, Pool


class World:
    """A pool of `n` endpoints with their scraped state and this router's in-flight counts."""

    def __init__(self, n: int, seed: int = 1) -> None:
        self.endpoints = [Endpoint(EndpointKey(f"10.0.0.{i}", 8000), ObjectRef("ns", f"pod-{i}"), "vllm",
                                   f"10.0.0.{i}:8000") for i in range(n)]
        self.pool = Pool(ObjectRef("ns", "pool"), tuple(self.endpoints))
        self.states = EndpointStates(stale_after=2.0)
        self.inflight = InFlight()
        self.env = PluginEnv(self.states, self.inflight, random.Random(seed))

    def scraped(self, i: int, *, waiting: float = 0, running: float = 0, kv: float = 0.0, ttft: float = 0.0,
                tpot: float = 0.0, lora: LoraInfo | None = None, adapters: frozenset[str] = frozenset(),
                age: float = 0.0) -> EndpointState:
        state = self.states.add(self.endpoints[i].key, "vllm")
        state.waiting, state.running, state.kv_usage, state.ttft, state.tpot = waiting, running, kv, ttft, tpot
        if lora is not None:
            state.lora = lora
        state.adapters = adapters
        state.updated_at = time.monotonic() - age
        return state

    def ctx(self, model: str = "m", payload: dict | None = None, headers: dict | None = None) -> Context:
        return Context(model, payload, headers or {}, time.monotonic(), self.states)


@pytest.fixture
def world():
    return World(3)

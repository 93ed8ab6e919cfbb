"""The pluggable endpoint picker: filters, weighted scorers and a final picker over one pool's endpoints.

`Scheduler.pick` is what the proxy calls for each attempt (the `Picker` interface): synchronous, no I/O,
one clock read. Scores are clamped to [0, 1] and summed with their weights; a pick with one candidate left
skips scoring. Filters that leave nothing raise `Overloaded` (429) on the first attempt; on a retry they
end the retries instead. `served` feeds learning plugins (the prefix index) once an endpoint answered;
`forget` drops endpoints that left every pool. Each plugin's time is observed into
`kthena_router_scheduler_plugin_duration_seconds` when metrics are given.

`PoolSchedulers` is what the router hands the proxy: the router's scheduler, shared by every pool without
a `kthena.io/scheduler-config` annotation, plus one `Scheduler` per pool whose annotation reconcile
validated (`Pool.scheduler_config`). `sync` runs once per Snapshot, off the request path, and keeps a
pool's scheduler (and what its plugins learned) while its configuration is unchanged; a pick costs one
dict lookup more than a single scheduler.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from kthena_router import errors
from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.state import EndpointStates
from kthena_router.scheduling.config import SchedulerConfig, describe_config
from kthena_router.scheduling.framework import (
    Context,
    ForgettingPlugin,
    LearningPlugin,
    MeasuringPlugin,
    PluginEnv,
    build_args,
)
from kthena_router.scheduling.picker import InFlight, PickRequest
from kthena_router.scheduling.pickers import PICKERS
from kthena_router.scheduling.plugins import least_latency
from kthena_router.scheduling.registry import lookup
from kthena_router.snapshot import Endpoint, EndpointKey, Pool

log = logging.getLogger(__name__)


class PluginTimer(Protocol):
    def observe_plugin(self, model: str, plugin: str, kind: str, seconds: float) -> None: ...


class _Stage:
    __slots__ = ("name", "plugin", "weight")

    def __init__(self, name: str, plugin: Any, weight: float = 1.0) -> None:
        self.name = name
        self.plugin = plugin
        self.weight = weight


class Scheduler:
    def __init__(self, config: SchedulerConfig, states: EndpointStates, inflight: InFlight, *,
                 rng: random.Random | None = None, timer: PluginTimer | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.env = PluginEnv(states, inflight, self.rng)
        self.timer = timer
        instances: dict[str, Any] = {}

        def instance(name: str) -> Any:
            plugin = instances.get(name)
            if plugin is None:
                module = lookup(name)
                if module is None:
                    raise ValueError(f"unknown scheduler plugin {name!r}")
                args = build_args(module.Args, config.args.get(name), f"pluginConfig {name}.args")
                plugin = instances[name] = module.Plugin(args, self.env)
            return plugin

        # One instance per plugin name, shared by its filter and score roles (and its learned state).
        self.filters = tuple(_Stage(name, instance(name)) for name in config.filters)
        self.scorers = tuple(_Stage(name, instance(name), weight) for name, weight in config.scorers
                             if weight > 0)
        self.learners = tuple(p for p in instances.values() if isinstance(p, LearningPlugin))
        self.measurers = tuple(p for p in instances.values() if isinstance(p, MeasuringPlugin))
        self.forgetters = tuple(p for p in instances.values() if isinstance(p, ForgettingPlugin))
        self.final = PICKERS[config.picker](self.rng)

    def uses(self, plugin: str) -> bool:
        """Whether `plugin` runs in this pipeline (as a filter or a scorer with weight > 0)."""
        return any(s.name == plugin for s in (*self.filters, *self.scorers))

    def describe(self) -> dict[str, Any]:
        return {"filters": [s.name for s in self.filters],
                "scorers": {s.name: s.weight for s in self.scorers},
                "picker": self.config.picker}

    def pick(self, pool: Pool, request: PickRequest, exclude: Collection[EndpointKey]) -> Endpoint | None:
        now = time.monotonic()
        ctx: Context | None = request.context
        retry = ctx is not None  # `exclude` alone cannot tell: it also holds endpoints ejected as outliers
        if ctx is None:
            ctx = request.context = Context(request.model, request.payload, request.headers, now,
                                            self.env.states)
            ctx.owner = self
        else:
            ctx.retime(now)
        if exclude:
            candidates = [e for e in pool.endpoints if e.key not in exclude]
        else:
            candidates = list(pool.endpoints)
        if not candidates:
            return None
        timer = self.timer
        model = request.model or ""
        for stage in self.filters:
            t0 = time.perf_counter() if timer is not None else 0.0
            candidates = stage.plugin.filter(ctx, candidates)
            if timer is not None:
                timer.observe_plugin(model, stage.name, "filter", time.perf_counter() - t0)
            if not candidates:
                if retry:
                    return None
                raise errors.Overloaded(f"every endpoint of InferencePool {pool.ref} is overloaded "
                                        f"(filtered out by {stage.name})")
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            totals = [0.0] * len(candidates)
            for stage in self.scorers:
                t0 = time.perf_counter() if timer is not None else 0.0
                scores = stage.plugin.score(ctx, candidates)
                if timer is not None:
                    timer.observe_plugin(model, stage.name, "score", time.perf_counter() - t0)
                w = stage.weight
                totals = [t + (w if s >= 1.0 else w * s if s > 0.0 else 0.0)
                          for t, s in zip(totals, scores, strict=True)]
            chosen = self.final.choose(candidates, totals)
        ctx.endpoint = chosen
        return chosen

    def served(self, request: PickRequest, endpoint: Endpoint) -> None:
        """`endpoint` answered `request`: let learning plugins record it."""
        ctx = request.context
        if ctx is None:
            return
        for plugin in self.learners:
            plugin.on_served(ctx, endpoint)

    def finished(self, request: PickRequest, endpoint: Endpoint, rec: Any) -> None:
        """`endpoint` finished a response: pass the router's timings of a streamed one to measuring plugins."""
        ctx = request.context
        if ctx is None or not self.measurers or not rec.stream or not rec.t_first_token \
                or not rec.t_upstream_start or rec.upstream_status_code >= 400:
            return
        ttft = rec.t_first_token - rec.t_upstream_start
        tpot = 0.0
        if rec.output_tokens > 1 and rec.t_upstream_end:
            tpot = (rec.t_upstream_end - rec.t_first_token) / (rec.output_tokens - 1)
        for plugin in self.measurers:
            plugin.on_finished(ctx, endpoint, ttft, tpot)

    def forget(self, alive: Collection[EndpointKey]) -> None:
        """Drop learned state of endpoints not in `alive` (called when the Snapshot changes)."""
        for plugin in self.forgetters:
            plugin.forget(alive)


class PoolSchedulers:
    """The router's scheduler plus the per-pool ones its pools' annotations ask for (the proxy's `Picker`)."""

    def __init__(self, config: SchedulerConfig, states: EndpointStates, inflight: InFlight, *,
                 rng: random.Random | None = None, timer: PluginTimer | None = None) -> None:
        self.states = states
        self.inflight = inflight
        self.rng = rng or random.Random()
        self.timer = timer
        self.default = Scheduler(config, states, inflight, rng=self.rng, timer=timer)
        self._by_pool: dict[ObjectRef, Scheduler] = {}
        self._errors: dict[ObjectRef, str] = {}  # what was last logged per pool, to log each change once

    def sync(self, pools: Mapping[ObjectRef, Pool]) -> None:
        """Follow a new Snapshot's pools: build schedulers for new or changed overrides, drop the rest."""
        by_pool: dict[ObjectRef, Scheduler] = {}
        errors_now: dict[ObjectRef, str] = {}
        for ref, pool in pools.items():
            if pool.scheduler_error is not None:
                errors_now[ref] = pool.scheduler_error
                if self._errors.get(ref) != pool.scheduler_error:
                    log.warning("InferencePool %s: %s; using the router's scheduler", ref, pool.scheduler_error)
            if pool.scheduler_config is not None:
                by_pool[ref] = self._scheduler_for(ref, pool.scheduler_config)
        for ref in self._by_pool.keys() - by_pool.keys():
            if ref in pools:
                log.info("InferencePool %s: back on the router's scheduler", ref)
        self._by_pool = by_pool
        self._errors = errors_now

    def _scheduler_for(self, ref: ObjectRef, config: SchedulerConfig) -> Scheduler:
        current = self._by_pool.get(ref)
        if current is not None and current.config == config:
            current.config = config  # the new Snapshot's equal copy: later picks compare by identity
            return current
        log.info("InferencePool %s: own scheduler: %s", ref, describe_config(config))
        return Scheduler(config, self.states, self.inflight, rng=self.rng, timer=self.timer)

    def scheduler_of(self, pool: Pool) -> Scheduler:
        """The scheduler that picks for `pool`: the router's, or the pool's own as of the last `sync`.

        A request still holding an older Snapshot whose override differs (it was changed meanwhile) gets
        a scheduler of its own, used for that request only, so the pool's current one keeps what it learned."""
        config = pool.scheduler_config
        if config is None:
            return self.default
        scheduler = self._by_pool.get(pool.ref)
        if scheduler is not None and (scheduler.config is config or scheduler.config == config):
            return scheduler
        return Scheduler(config, self.states, self.inflight, rng=self.rng, timer=self.timer)

    def pick(self, pool: Pool, request: PickRequest, exclude: Collection[EndpointKey]) -> Endpoint | None:
        ctx = request.context
        if ctx is not None and ctx.owner is not None:  # a retry: the scheduler of the first pick decides
            return ctx.owner.pick(pool, request, exclude)
        return self.scheduler_of(pool).pick(pool, request, exclude)

    def served(self, request: PickRequest, endpoint: Endpoint) -> None:
        ctx = request.context
        if ctx is not None and ctx.owner is not None:
            ctx.owner.served(request, endpoint)

    def finished(self, request: PickRequest, endpoint: Endpoint, rec: Any) -> None:
        ctx = request.context
        if ctx is not None and ctx.owner is not None:
            ctx.owner.finished(request, endpoint, rec)

    def forget(self, alive: Collection[EndpointKey]) -> None:
        self.default.forget(alive)
        for scheduler in self._by_pool.values():
            scheduler.forget(alive)

    @property
    def reads_latency(self) -> bool:
        """Whether any pipeline reads scraped TTFT/TPOT (the scraper parses those histograms only then)."""
        return any(s.uses(least_latency.NAME) for s in (self.default, *self._by_pool.values()))

    def describe(self) -> dict[str, Any]:
        out = self.default.describe()
        if self._by_pool:
            out["pools"] = {str(ref): s.describe() for ref, s in sorted(self._by_pool.items())}
        if self._errors:
            out["invalid"] = {str(ref): message for ref, message in sorted(self._errors.items())}
        return out

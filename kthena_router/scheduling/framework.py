"""The plugin framework of the scheduler: per-request context, plugin interfaces and argument parsing.

A pipeline is filters (each keeps a subset of the candidates), then weighted scorers (each returns one
score in [0, 1] per candidate, in input order), then a picker over the weighted sums. Plugins read endpoint
state (`PluginEnv.states`, written by the scraper) and the router's in-flight counts (`PluginEnv.inflight`,
written by the proxy); they never await and never mutate either. Plugins that learn from traffic (the
prefix index) get `on_served` after an endpoint answered and `forget` when endpoints leave; plugins that
measure (least-latency) get `on_finished` with the router's own timings of the finished response.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from kthena_router.endpoints.state import EndpointState, EndpointStates
from kthena_router.scheduling.picker import InFlight
from kthena_router.snapshot import Endpoint, EndpointKey


class ConfigError(ValueError):
    """A scheduler configuration that cannot be used; `path` names the YAML location at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class PluginEnv:
    """What plugins may read besides the request: endpoint state, in-flight counts, randomness."""

    __slots__ = ("states", "inflight", "rng")

    def __init__(self, states: EndpointStates, inflight: InFlight, rng: random.Random | None = None) -> None:
        self.states = states
        self.inflight = inflight
        self.rng = rng or random.Random()


class Context:
    """One request as the plugins see it, built on the first pick and reused by retries.

    `now` is `time.monotonic()` of the current pick (for freshness checks). `prompt_hashes` is filled by
    the prefix-cache plugin the first time it needs them, so retries and `on_served` do not hash again.
    `fresh(endpoints)` is the scraped state of each candidate, None where unknown or stale, computed once
    per candidate list and shared by every plugin of the pick. `owner` is the scheduler that made the
    first pick: retries and feedback go to it, even if the pool's scheduler changed meanwhile.
    """

    __slots__ = ("model", "payload", "headers", "now", "prompt_hashes", "endpoint", "states", "owner",
                 "_view_of", "_view")

    def __init__(self, model: str | None, payload: dict | None, headers: Mapping[str, str] | None,
                 now: float, states: EndpointStates | None = None) -> None:
        self.model = model
        self.payload = payload
        self.headers = headers
        self.now = now
        self.prompt_hashes: list[int] | None = None
        self.endpoint: Endpoint | None = None  # the last pick
        self.states = states
        self.owner: Any = None
        self._view_of: list[Endpoint] | None = None
        self._view: list[EndpointState | None] = []

    def fresh(self, endpoints: list[Endpoint]) -> list[EndpointState | None]:
        if endpoints is self._view_of:
            return self._view
        by_key = self.states.by_key if self.states is not None else {}
        now = self.now
        view: list[EndpointState | None] = []
        for endpoint in endpoints:
            state = by_key.get(endpoint.key)
            if state is not None and (state.updated_at < 0 or now - state.updated_at > state.stale_after):
                state = None
            view.append(state)
        self._view_of, self._view = endpoints, view
        return view

    def retime(self, now: float) -> None:
        """A new pick for the same request (a retry): freshness is judged again."""
        self.now = now
        self._view_of = None


@runtime_checkable
class FilterPlugin(Protocol):
    def filter(self, ctx: Context, endpoints: list[Endpoint]) -> list[Endpoint]:
        """The candidates to keep, in input order."""
        ...


@runtime_checkable
class ScorePlugin(Protocol):
    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        """One score in [0, 1] per candidate, in input order (higher is better)."""
        ...


@runtime_checkable
class LearningPlugin(Protocol):
    def on_served(self, ctx: Context, endpoint: Endpoint) -> None:
        """`endpoint` answered the request of `ctx` (response headers received, status < 500)."""
        ...


@runtime_checkable
class ForgettingPlugin(Protocol):
    def forget(self, alive: Collection[EndpointKey]) -> None:
        """Drop what is known about endpoints not in `alive`."""
        ...


@runtime_checkable
class MeasuringPlugin(Protocol):
    def on_finished(self, ctx: Context, endpoint: Endpoint, ttft: float, tpot: float) -> None:
        """The router measured a streamed response of `endpoint`: time to first token and per output
        token after it, in seconds (0 when not measurable, e.g. a single token)."""
        ...


class PluginArgs:
    """Base of every plugin's frozen `Args` dataclass: YAML keys are camelCase forms of the field names,
    plus any spellings in `ALIASES` (kthena's `TTFTTPOTWeightFactor`). Values are type-checked."""

    ALIASES: ClassVar[Mapping[str, str]] = {}


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def build_args(cls: type, raw: Any, path: str) -> Any:
    """An instance of the frozen dataclass `cls` from the YAML mapping `raw`; ConfigError naming `path`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases: Mapping[str, str] = getattr(cls, "ALIASES", {})
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = aliases.get(key) or _CAMEL.sub("_", str(key)).lower()
        field = fields.get(name)
        if field is None:
            known = ", ".join(sorted(_camel(n) for n in fields)) or "none"
            raise ConfigError(f"{path}.{key}", f"unknown argument (known: {known})")
        expected = _TYPES.get(str(field.type))
        if expected is not None and (not isinstance(value, expected)
                                     or (bool not in expected and isinstance(value, bool))):
            raise ConfigError(f"{path}.{key}", f"must be of type {field.type}, got {value!r}")
        values[name] = float(value) if str(field.type) == "float" else value
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def min_max_scores(values: list[float], *, lower_is_better: bool = True) -> list[float]:
    """Values scaled to [0, 1] across the candidates: the best gets 1, the worst 0, all equal gives 1."""
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [1.0] * len(values)
    span = hi - lo
    if lower_is_better:
        return [(hi - v) / span for v in values]
    return [(v - lo) / span for v in values]

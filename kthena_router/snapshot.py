"""The routing Snapshot: everything the request path reads, built by reconcile and swapped atomically.

Reconcile builds a new Snapshot off the hot path whenever a resource changes; the request handler binds
`snap = state.snapshot` once at entry and reads only that. Nothing here is mutated after construction,
so nothing in the request path locks.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from kthena_router.api.httproute import HeaderModifier, PathMatch, RequestRedirect, Timeouts, URLRewrite
from kthena_router.api.meta import ObjectRef

if TYPE_CHECKING:
    from kthena_router.routing.table import RouteTable
    from kthena_router.scheduling.config import SchedulerConfig


class EndpointKey(NamedTuple):
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of a pool: a Ready pod's IP and one of the pool's target ports."""

    key: EndpointKey
    pod: ObjectRef
    engine: str  # "vllm" | "sglang" | ... from the pod label inference.networking.k8s.io/engine-type
    address: str  # "ip:port" (IPv6 in brackets), ready for a URL authority


@dataclass(frozen=True, slots=True)
class Pool:
    """An InferencePool with its current endpoints, in a stable order (pod name, then port)."""

    ref: ObjectRef
    endpoints: tuple[Endpoint, ...]
    app_protocol: str = "http"
    # Set when the pool cannot take traffic (e.g. an endpointPickerRef naming a missing Service):
    # requests routed here get this message with a 500.
    unusable_reason: str | None = None
    # The pool's own scheduler (its `kthena.io/scheduler-config` annotation, validated by reconcile);
    # None: the router's scheduler, also when the annotation is invalid (`scheduler_error` says why).
    scheduler_config: SchedulerConfig | None = None
    scheduler_error: str | None = None


@dataclass(frozen=True, slots=True)
class Backend:
    """One backendRef of a rule after resolution. Either `pool` is set, or `error` says why it cannot serve."""

    weight: int
    pool: ObjectRef | None
    error: str | None = None  # an invalid ref: its share of traffic gets a 500 with this message
    request_headers: HeaderModifier | None = None  # backendRef-level RequestHeaderModifier
    response_headers: HeaderModifier | None = None  # backendRef-level ResponseHeaderModifier


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One HTTPRoute rule ready for the request path. Backends with weight 0 are already dropped."""

    route: ObjectRef
    rule_index: int
    gateway: ObjectRef
    listener: str
    backends: tuple[Backend, ...]
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    url_rewrite: URLRewrite | None = None
    redirect: RequestRedirect | None = None
    timeouts: Timeouts = Timeouts()
    # Why the rule cannot be served even though it matched (no backendRefs, unsupported filter, ...): 500.
    error: str | None = None
    _cumulative: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        total, cumulative = 0, []
        for backend in self.backends:
            total += backend.weight
            cumulative.append(total)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def choose_backend(self, rng: random.Random) -> Backend | None:
        """Pick a backend in proportion to its weight; None when the rule has no backend with weight > 0."""
        cumulative = self._cumulative
        if not cumulative or cumulative[-1] == 0:
            return None
        if len(cumulative) == 1:
            return self.backends[0]
        return self.backends[bisect.bisect_right(cumulative, rng.randrange(cumulative[-1]))]


class RouteMatchResult(NamedTuple):
    rule: CompiledRule
    path: PathMatch  # the match that selected the rule (ReplacePrefixMatch needs its prefix)


@dataclass(frozen=True, slots=True)
class ListenerRoutes:
    """The routes attached to one Gateway listener, compiled for lookup."""

    gateway: ObjectRef
    listener: str
    port: int
    hostname: str | None
    table: RouteTable


@dataclass(frozen=True, slots=True)
class PortTable:
    """All listeners sharing one port; the Host header selects one (exact > longest wildcard > no hostname)."""

    port: int
    exact: Mapping[str, ListenerRoutes]
    wildcard: tuple[tuple[str, ListenerRoutes], ...]  # (".suffix", listener), longest suffix first
    catch_all: ListenerRoutes | None

    def select(self, host: str) -> ListenerRoutes | None:
        """`host` is already lower-cased with its port removed."""
        hit = self.exact.get(host)
        if hit is not None:
            return hit
        for suffix, listener in self.wildcard:
            if host.endswith(suffix) and len(host) > len(suffix):
                return listener
        return self.catch_all


@dataclass(frozen=True, slots=True)
class Snapshot:
    ports: Mapping[int, PortTable]
    pools: Mapping[ObjectRef, Pool]
    # InferenceObjective priorities: (namespace, name) -> (pool name, priority)
    objectives: Mapping[ObjectRef, tuple[str, int]] = field(default_factory=dict)
    version: int = 0


EMPTY_SNAPSHOT = Snapshot(ports={}, pools={})

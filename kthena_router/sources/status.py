"""Writes reconcile's statuses back to the Kubernetes API: the `StatusSink` of Kubernetes mode.

`publish` only records the newest `Statuses` and wakes the writer task; the writer compares each object's
wanted status with what it last wrote and, for the ones that differ, reads the object, merges (entries of
other controllers in HTTPRoute and InferencePool parents are kept as they are), keeps each condition's
lastTransitionTime while its status is unchanged, and patches the status subresource with a JSON merge
patch that carries the resourceVersion it read, so a concurrent change gives 409 and a fresh read. Nothing
is written when the merged status equals the stored one (timestamps aside). Requests are rate-limited by
a token bucket. With leader election only the Lease holder writes; a new leader rewrites everything.
The writer also creates the `kthena-router` GatewayClass and the `default` Gateway when they are absent.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kthena_router.api.meta import ObjectRef
from kthena_router.reconcile.status import Statuses
from kthena_router.resources import CONTROLLER_NAME, GATEWAY_CLASS_NAME, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kthena_router.sources.kube import (
    GATEWAY_CLASSES,
    GATEWAYS,
    HTTP_ROUTES,
    POOLS,
    POOLS_V1ALPHA2,
    Kind,
    KubeApi,
    KubeApiError,
)
from kthena_router.sources.leader import LeaderElector

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 5
MERGE_PATCH = "application/merge-patch+json"


class TokenBucket:
    """`qps` tokens a second, up to `burst`; `take()` waits for one."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at: float | None = None

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.qps)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_conditions(wanted: list[dict[str, Any]], current: Any, now: str) -> list[dict[str, Any]]:
    """Conditions with lastTransitionTime: kept from `current` when the type's status did not change."""
    by_type = {c.get("type"): c for c in current or () if isinstance(c, dict)}
    out = []
    for cond in wanted:
        old = by_type.get(cond["type"])
        when = old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        out.append({**cond, "lastTransitionTime": when or now})
    return out


def without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def _same_parent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("group", "kind", "namespace", "name", "sectionName", "port")
    return all(a.get(k) == b.get(k) for k in keys)


def merge_status(kind: str, wanted: dict[str, Any], current: dict[str, Any], *, controller_name: str,
                 now: str, owned_gateways: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """The status to store: `wanted` stamped with times, merged into `current`.

    GatewayClass and Gateway statuses are wholly this controller's. HTTPRoute `parents` and v1
    InferencePool `parents` keep the entries of other controllers; v1alpha2 InferencePool `parent`
    entries have no controllerName, so an entry is ours when its Gateway is one of `owned_gateways`.
    """
    current = current or {}
    if kind in ("GatewayClass", "Gateway"):
        merged = {**current, **wanted}
        merged["conditions"] = stamp_conditions(wanted.get("conditions", []), current.get("conditions"), now)
        if "listeners" in wanted:
            old_listeners = {lst.get("name"): lst for lst in current.get("listeners") or ()}
            merged["listeners"] = [
                {**lst, "conditions": stamp_conditions(lst.get("conditions", []),
                                                       (old_listeners.get(lst["name"]) or {}).get("conditions"),
                                                       now)}
                for lst in wanted["listeners"]]
        return merged
    field = "parent" if kind == "InferencePool/v1alpha2" else "parents"
    old_parents = [p for p in current.get(field) or () if isinstance(p, dict)]

    def ours(entry: dict[str, Any]) -> bool:
        if kind == "InferencePool/v1alpha2":
            ref = entry.get("parentRef") or {}
            return (ref.get("namespace", ""), ref.get("name", "")) in owned_gateways
        return entry.get("controllerName") == controller_name

    kept = [p for p in old_parents if not ours(p)]
    mine = []
    for entry in wanted.get("parents", []):
        old = next((p for p in old_parents if ours(p) and _same_parent(p.get("parentRef") or {},
                                                                        entry["parentRef"])), None)
        new = {**entry, "conditions": stamp_conditions(entry["conditions"], (old or {}).get("conditions"), now)}
        if kind == "InferencePool/v1alpha2":
            new.pop("controllerName", None)
        mine.append(new)
    merged = {k: v for k, v in current.items() if k != field}
    merged[field] = kept + mine
    return merged


class StatusWriter:
    """The status sink of Kubernetes mode (see the module docstring)."""

    def __init__(self, api: KubeApi, *, namespace: str, port: int, qps: float = 0.0, burst: int = 0,
                 elector: LeaderElector | None = None,
                 pool_api_version: Callable[[ObjectRef], str | None] | None = None,
                 controller_name: str = CONTROLLER_NAME, gateway_class_name: str = GATEWAY_CLASS_NAME,
                 create_defaults: bool = True, retry_delay: float = 1.0) -> None:
        self.api = api
        self.namespace = namespace
        self.port = port
        self.controller_name = controller_name
        self.gateway_class_name = gateway_class_name
        self.create_defaults = create_defaults
        self.retry_delay = retry_delay
        self._bucket = TokenBucket(qps or 20.0, burst or 30)  # controller-runtime's defaults
        self._elector = elector
        self._pool_api_version = pool_api_version or (lambda ref: POOLS.api_version)
        self._wanted: Statuses | None = None
        self._written: dict[tuple[str, ObjectRef], Any] = {}
        self._defaults_done = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = 0  # status patches sent (for tests and the debug dump)
        if elector is not None:
            elector._on_change = self._leadership_changed

    # --- StatusSink ---

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._loop(), name="status-writer"))
        if self._elector is not None:
            self._tasks.append(asyncio.create_task(self._elector.run(), name="leader-election"))

    def publish(self, statuses: Statuses) -> None:
        self._wanted = statuses
        self._wake.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._elector is not None:
            await self._elector.release()

    # --- writing ---

    @property
    def may_write(self) -> bool:
        return self._elector is None or self._elector.is_leader

    def _leadership_changed(self, leader: bool) -> None:
        self._written.clear()  # a new leader checks everything once
        self._defaults_done = False
        if leader:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.may_write:
                continue
            try:
                if self.create_defaults and not self._defaults_done:
                    await self._ensure_defaults()
                    self._defaults_done = True
                failed = await self._write_all()
            except (KubeApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("status: %s; retrying in %gs", exc, self.retry_delay)
                failed = True
            if failed:
                await asyncio.sleep(self.retry_delay)
                self._wake.set()

    async def _write_all(self) -> bool:
        wanted = self._wanted
        if wanted is None:
            return False
        owned = frozenset((ref.namespace, ref.name) for ref in wanted.gateways)
        jobs: list[tuple[str, Kind, ObjectRef, dict[str, Any]]] = []
        jobs += [("GatewayClass", GATEWAY_CLASSES, ObjectRef("", n), s) for n, s in wanted.gateway_classes.items()]
        jobs += [("Gateway", GATEWAYS, ref, s) for ref, s in wanted.gateways.items()]
        jobs += [("HTTPRoute", HTTP_ROUTES, ref, s) for ref, s in wanted.http_routes.items()]
        for ref, s in wanted.pools.items():
            v1alpha2 = self._pool_api_version(ref) == POOLS_V1ALPHA2.api_version
            jobs.append(("InferencePool/v1alpha2" if v1alpha2 else "InferencePool",
                         POOLS_V1ALPHA2 if v1alpha2 else POOLS, ref, s))
        failed = False
        for label, kind, ref, status in jobs:
            key = (label, ref)
            if self._written.get(key) == status:
                continue
            try:
                await self._write(label, kind, ref, status, owned)
                self._written[key] = status
            except KubeApiError as exc:
                if exc.status == 404:  # deleted meanwhile; nothing to write
                    self._written[key] = status
                    continue
                log.warning("status: %s %s: %s", label, ref, exc)
                failed = True
        return failed

    async def _write(self, label: str, kind: Kind, ref: ObjectRef, wanted: dict[str, Any],
                     owned: frozenset[tuple[str, str]]) -> None:
        for attempt in range(MAX_CONFLICT_RETRIES):
            await self._bucket.take()
            obj = await self.api.request("GET", kind.path(ref.namespace, ref.name))
            current = obj.get("status") or {}
            merged = merge_status(label, wanted, copy.deepcopy(current), controller_name=self.controller_name,
                                  now=_now(), owned_gateways=owned)
            if without_times(merged) == without_times(current):
                return
            await self._bucket.take()
            try:
                await self.api.request(
                    "PATCH", kind.path(ref.namespace, ref.name, "status"), content_type=MERGE_PATCH,
                    body={"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": merged})
            except KubeApiError as exc:
                if exc.status == 409 and attempt + 1 < MAX_CONFLICT_RETRIES:
                    log.info("status: %s %s changed meanwhile; reading it again", label, ref)
                    continue
                raise
            self.writes += 1
            log.debug("status: wrote %s %s", label, ref)
            return

    async def _ensure_defaults(self) -> None:
        """Create the GatewayClass and the `default` Gateway on `--port` when absent (never changed after)."""
        gateway_class = {
            "apiVersion": GATEWAY_CLASSES.api_version, "kind": "GatewayClass",
            "metadata": {"name": self.gateway_class_name},
            "spec": {"controllerName": self.controller_name},
        }
        gateway = {
            "apiVersion": GATEWAYS.api_version, "kind": "Gateway",
            "metadata": {"name": "default", "namespace": self.namespace,
                         "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "spec": {"gatewayClassName": self.gateway_class_name,
                     "listeners": [{"name": "default", "port": self.port, "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "All"}}}]},
        }
        for kind, body, namespace in ((GATEWAY_CLASSES, gateway_class, None), (GATEWAYS, gateway, self.namespace)):
            await self._bucket.take()
            try:
                await self.api.request("GET", kind.path(namespace, body["metadata"]["name"]))
                continue
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
            try:
                await self.api.request("POST", kind.path(namespace), body=body)
                log.info("status: created %s %s", body["kind"], body["metadata"]["name"])
            except KubeApiError as exc:
                if exc.status != 409:
                    raise


"""Configuration from the Kubernetes API: list then watch every kind the router reads, with kubernetes_asyncio.

Where it sits: `KubeSource` is a `ConfigSource`; it keeps the watched objects parsed (raw dicts never leave
this module), and hands the app a whole `Resources` view after each burst of changes. It never reconciles,
routes or writes status (`status.py` writes; `leader.py` decides who may).

A watch is three nested layers, one job each:
- `one_stream` reads one watch response line by line; an inactivity deadline, re-armed per line, ends a
  stream that went silent (bookmarks are requested, so a healthy stream is never silent for long).
- `list_then_watch` lists (yielding one `Listed` with every item and the list's resourceVersion), then
  watches from that resourceVersion, resuming from the last one seen whenever a stream ends; it returns
  when the resourceVersion is too old (`410 Gone`, as an HTTP status or an ERROR event), to be relisted.
- `watch_forever` never returns: it relists after a return, and after a failure (API down, connection
  cut, 5xx, a kind whose CRD is not installed) it retries with exponential backoff and full jitter.

A relist replaces that kind's objects only once the new list has arrived, so routes stay served from the
last known state while the API is unreachable. Pods are never watched whole: each distinct
(namespace, selector) of the known InferencePools gets its own watch with a server-side label selector,
started and stopped as pools come and go, and only those pods are kept. Services are watched only for
their names (an endpointPickerRef must name an existing one); Namespaces for `allowedRoutes` selectors.
With `--watch-namespace`, namespaced kinds are watched in that namespace only and Namespaces are
narrowed to it with a field selector.

The exact API verbs used here and by the status writer and leader election are listed in `rbac.py`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from kthena_router.api import InvalidResource, ObjectRef, Resource, UnknownKind, parse_resource
from kthena_router.api.inferencepool import InferencePool
from kthena_router.api.meta import GATEWAY_GROUP, INFERENCE_GROUP, INFERENCE_X_GROUP
from kthena_router.resources import Resources, ResourceStore

log = logging.getLogger(__name__)


# --- the API connection ---------------------------------------------------------------------------


class KubeConfigMissing(Exception):
    """Neither in-cluster configuration nor a kubeconfig file is available."""


class KubeApiError(Exception):
    """A non-2xx answer of the API server, with its Status reason (e.g. NotFound, Conflict, Expired)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Gone(KubeApiError):
    """410: the resourceVersion asked for is no longer available; relist."""


async def api_client(kubeconfig: str | None) -> kclient.ApiClient:
    """A client from `kubeconfig` when given, else the in-cluster service account."""
    configuration = kclient.Configuration()
    if kubeconfig:
        if not await asyncio.to_thread(os.path.exists, kubeconfig):
            raise KubeConfigMissing(f"kubeconfig {kubeconfig} does not exist")
        await kconfig.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                       persist_config=False)
    else:
        try:
            kconfig.load_incluster_config(client_configuration=configuration)
        except kconfig.ConfigException as exc:
            raise KubeConfigMissing(str(exc)) from None
    return kclient.ApiClient(configuration)


class KubeApi:
    """Raw JSON requests over a kubernetes_asyncio `ApiClient` (its configuration, auth and TLS)."""

    def __init__(self, client: kclient.ApiClient, *, request_timeout: float = 30.0) -> None:
        self.client = client
        self.request_timeout = request_timeout

    async def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        response = await self._call(method, path, query, body, content_type,
                                    aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            data = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise _error(response.status, data)
        return orjson.loads(data) if data else {}

    async def open_stream(self, path: str, query: Mapping[str, str]) -> aiohttp.ClientResponse:
        """A watch response whose body the caller reads; raises KubeApiError on a non-2xx status."""
        response = await self._call("GET", path, query, None, "application/json",
                                    aiohttp.ClientTimeout(total=None, connect=self.request_timeout,
                                                          sock_connect=self.request_timeout))
        if not 200 <= response.status < 300:
            try:
                data = await response.read()
            finally:
                response.release()
            raise _error(response.status, data)
        return response

    async def _call(self, method: str, path: str, query: Mapping[str, str] | None, body: Any,
                    content_type: str, limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        response = await self.client.call_api(
            path, method, query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"], _preload_content=False, _request_timeout=limits)
        return response  # type: ignore[no-any-return]


def _error(status: int, data: bytes) -> KubeApiError:
    reason, message = "", data.decode("utf-8", "replace").strip()[:300]
    try:
        body = orjson.loads(data)
        if isinstance(body, dict):
            reason, message = str(body.get("reason", "")), str(body.get("message", message))
    except orjson.JSONDecodeError:
        pass
    cls = Gone if status == 410 else KubeApiError
    return cls(status, reason or _REASONS.get(status, "Error"), message)


_REASONS = {404: "NotFound", 409: "Conflict", 410: "Expired", 403: "Forbidden", 401: "Unauthorized"}


# --- what is watched ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    optional: bool = False  # a CRD that may legitimately be absent: logged at info, not as an error

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource is not None:
                base += f"/{subresource}"
        return base

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}/{self.version}"


GATEWAY_CLASSES = Kind(GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass", namespaced=False)
GATEWAYS = Kind(GATEWAY_GROUP, "v1", "gateways", "Gateway")
HTTP_ROUTES = Kind(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute")
REFERENCE_GRANTS = Kind(GATEWAY_GROUP, "v1beta1", "referencegrants", "ReferenceGrant")
POOLS = Kind(INFERENCE_GROUP, "v1", "inferencepools", "InferencePool")
POOLS_V1ALPHA2 = Kind(INFERENCE_X_GROUP, "v1alpha2", "inferencepools", "InferencePool", optional=True)
OBJECTIVES = Kind(INFERENCE_X_GROUP, "v1alpha2", "inferenceobjectives", "InferenceObjective", optional=True)
PODS = Kind("", "v1", "pods", "Pod")
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICES = Kind("", "v1", "services", "Service")
LEASES = Kind("coordination.k8s.io", "v1", "leases", "Lease")

GATEWAY_API_KINDS = (GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, REFERENCE_GRANTS, NAMESPACES)
INFERENCE_KINDS = (POOLS, POOLS_V1ALPHA2, OBJECTIVES, SERVICES)


@dataclass(frozen=True, slots=True)
class Selectors:
    namespace: str | None = None
    labels: str = ""
    fields: str = ""

    def query(self) -> dict[str, str]:
        query = {}
        if self.labels:
            query["labelSelector"] = self.labels
        if self.fields:
            query["fieldSelector"] = self.fields
        return query


@dataclass(frozen=True, slots=True)
class Listed:
    """A complete list: it replaces everything known of the kind. The end-of-list marker of a watch."""

    items: tuple[dict[str, Any], ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchTimings:
    """How watches behave in time. The defaults suit a real cluster; tests shorten them."""

    server_timeout: float = 300.0  # timeoutSeconds asked of the server; it ends the stream (then resumed)
    inactivity_timeout: float = 330.0  # no line at all for this long: the stream is presumed dead
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    coalesce: float = 0.05  # changes within this window become one `on_change`


# --- the three layers -----------------------------------------------------------------------------


async def one_stream(api: KubeApi, kind: Kind, selectors: Selectors, resource_version: str, *,
                     timings: WatchTimings) -> AsyncIterator[dict[str, Any]]:
    """The raw events of one watch request, until the server ends it or it stays silent too long."""
    query = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
             "timeoutSeconds": str(int(timings.server_timeout * random.uniform(1.0, 1.2)) or 1),
             **selectors.query()}
    response = await api.open_stream(kind.path(selectors.namespace), query)
    try:
        while True:
            try:
                async with asyncio.timeout(timings.inactivity_timeout):
                    line = await response.content.readline()
            except TimeoutError:
                log.info("watch %s: no event for %gs, reconnecting", kind, timings.inactivity_timeout)
                return
            if not line:
                return
            if line.strip():
                yield orjson.loads(line)
    finally:
        response.close()


async def list_then_watch(api: KubeApi, kind: Kind, selectors: Selectors, *,
                          timings: WatchTimings) -> AsyncIterator[Listed | WatchEvent]:
    """Yield one `Listed`, then changes; resume a stream that ends or is cut from the last resourceVersion
    seen. Returns when that resourceVersion is gone (410), for the caller to relist."""
    listing = await api.request("GET", kind.path(selectors.namespace), query=selectors.query())
    resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
    items = tuple(_with_kind(kind, item) for item in listing.get("items") or ())
    yield Listed(items, resource_version)
    while True:
        try:
            async for raw in one_stream(api, kind, selectors, resource_version, timings=timings):
                event_type = raw.get("type")
                obj = raw.get("object") or {}
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        log.info("watch %s: resourceVersion %s expired, relisting", kind, resource_version)
                        return
                    raise KubeApiError(int(obj.get("code") or 500), str(obj.get("reason", "")),
                                       str(obj.get("message", "")))
                new_version = (obj.get("metadata") or {}).get("resourceVersion")
                if new_version:
                    resource_version = str(new_version)
                if event_type == "BOOKMARK":
                    continue
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    yield WatchEvent(event_type, _with_kind(kind, obj))
                else:
                    log.warning("watch %s: skipping an event of unknown type %r", kind, event_type)
        except Gone:
            log.info("watch %s: resourceVersion %s gone, relisting", kind, resource_version)
            return
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            # Cut mid-stream: resume from the last resourceVersion (a failure to reconnect goes up).
            log.info("watch %s: stream cut (%s), resuming from %s", kind, type(exc).__name__, resource_version)
            await asyncio.sleep(random.uniform(0, timings.backoff_initial))


async def watch_forever(api: KubeApi, kind: Kind, selectors: Selectors, *,
                        timings: WatchTimings) -> AsyncIterator[Listed | WatchEvent]:
    """List-then-watch forever: relist after a 410, retry failures with backoff and full jitter."""
    failures = 0
    reported: str | None = None
    while True:
        try:
            async for item in list_then_watch(api, kind, selectors, timings=timings):
                if isinstance(item, Listed):
                    if reported is not None:
                        log.info("watch %s: listing again after: %s", kind, reported)
                    failures, reported = 0, None
                yield item
            continue
        except KubeApiError as exc:
            problem = (f"{kind} is not served by the API (is its CRD installed?)" if exc.status == 404
                       else f"{exc}")
            if exc.status == 404:
                yield Listed((), "")  # nothing of a kind that does not exist; keep trying
        except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError) as exc:
            problem = f"cannot reach the API server: {type(exc).__name__}: {exc}"
        if problem != reported:
            level = logging.INFO if kind.optional and problem.startswith(str(kind)) else logging.WARNING
            log.log(level, "watch %s: %s; retrying with backoff", kind, problem)
            reported = problem
        failures += 1
        delay = min(timings.backoff_max, timings.backoff_initial * 2 ** min(failures - 1, 20))
        await asyncio.sleep(random.uniform(0, delay) + timings.backoff_initial / 2)


def _with_kind(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """List items of built-in kinds carry no apiVersion/kind; parsing needs them."""
    if obj.get("kind") != kind.kind or obj.get("apiVersion") != kind.api_version:
        obj = {**obj, "apiVersion": kind.api_version, "kind": kind.kind}
    return obj


# --- the source -----------------------------------------------------------------------------------


def pod_selector(pool: InferencePool) -> tuple[str, str]:
    """(namespace, labelSelector) that selects exactly a pool's candidate pods on the server."""
    return pool.meta.namespace, ",".join(f"{k}={v}" for k, v in pool.selector.match_labels)


class _Watched:
    """The parsed objects of one watch, and whether its first list has arrived."""

    __slots__ = ("kind", "selectors", "objects", "listed", "task")

    def __init__(self, kind: Kind, selectors: Selectors) -> None:
        self.kind = kind
        self.selectors = selectors
        self.objects: dict[ObjectRef, Resource] = {}
        self.listed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class KubeSource:
    """Watches the API and keeps every relevant object parsed; `load()` returns after the first full sync."""

    def __init__(self, api: KubeApi, *, watch_namespace: str | None = None, enable_gateway_api: bool = True,
                 enable_inference_extension: bool = True, timings: WatchTimings | None = None) -> None:
        self.api = api
        self.watch_namespace = watch_namespace or None
        self.timings = timings or WatchTimings()
        kinds: list[Kind] = []
        if enable_gateway_api:
            kinds.extend(GATEWAY_API_KINDS)
        if enable_inference_extension:
            kinds.extend(INFERENCE_KINDS)
        self._watches: dict[Kind, _Watched] = {}
        for kind in kinds:
            fields = f"metadata.name={self.watch_namespace}" if kind is NAMESPACES and self.watch_namespace else ""
            self._watches[kind] = _Watched(kind, Selectors(self.watch_namespace if kind.namespaced else None,
                                                           fields=fields))
        self._pod_watches: dict[tuple[str, str], _Watched] = {}
        self._errors: dict[tuple[str, ObjectRef], str] = {}
        self._dirty = asyncio.Event()
        self._stopped: set[asyncio.Task[None]] = set()  # pod watches no pool needs any more, being cancelled
        self._closed = False
        self.rebuilds = 0  # how many views were handed out (a burst of changes should make few)

    # --- ConfigSource ---

    @property
    def errors(self) -> list[str]:
        return [self._errors[key] for key in sorted(self._errors)]

    async def load(self) -> Resources:
        """Start every watch and wait until each has listed once (pods of the known pools included).
        While the API cannot be reached this keeps waiting; the watches retry with backoff."""
        for watched in self._watches.values():
            self._start(watched, f"watch-{watched.kind.plural}.{watched.kind.group or 'core'}")
        try:
            await asyncio.gather(*(w.listed.wait() for w in self._watches.values()))
            while True:
                self._sync_pod_watches()
                pending = [w for w in self._pod_watches.values() if not w.listed.is_set()]
                if not pending:
                    break
                await asyncio.gather(*(w.listed.wait() for w in pending))
        except BaseException:
            await self.close()
            raise
        self._dirty.clear()
        log.info("kubernetes: first sync done: %d pools, %d pods watched through %d selectors",
                 len(self._objects_of(POOLS, POOLS_V1ALPHA2)), sum(len(w.objects) for w in self._pod_watches.values()),
                 len(self._pod_watches))
        return self.view()

    async def watch(self, on_change: Callable[[Resources], Awaitable[None]]) -> None:
        """Hand a new view to `on_change` after each burst of changes; closes the watches when cancelled."""
        try:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self.timings.coalesce)
                self._dirty.clear()
                self._sync_pod_watches()
                await on_change(self.view())
        finally:
            await self.close()

    async def close(self) -> None:
        self._closed = True
        tasks = [w.task for w in (*self._watches.values(), *self._pod_watches.values()) if w.task is not None]
        tasks.extend(self._stopped)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- state ---

    def view(self) -> Resources:
        """Every object known now; v1 InferencePools win over v1alpha2 ones of the same name."""
        self.rebuilds += 1
        store = ResourceStore()
        for kind in sorted(self._watches, key=lambda k: k is POOLS):
            for resource in self._watches[kind].objects.values():
                store.put(resource)
        for watched in self._pod_watches.values():
            for resource in watched.objects.values():
                store.put(resource)
        return store.view()

    def pool_api_version(self, ref: ObjectRef) -> str | None:
        """Which API version a pool was read from (the status writer writes it back there)."""
        for kind in (POOLS, POOLS_V1ALPHA2):
            watched = self._watches.get(kind)
            if watched is not None and ref in watched.objects:
                return kind.api_version
        return None

    def _objects_of(self, *kinds: Kind) -> dict[ObjectRef, Resource]:
        out: dict[ObjectRef, Resource] = {}
        for kind in kinds:
            watched = self._watches.get(kind)
            if watched is not None:
                out.update(watched.objects)
        return out

    def _start(self, watched: _Watched, name: str) -> None:
        watched.task = asyncio.create_task(self._run(watched), name=name)
        watched.task.add_done_callback(_log_unexpected_end)

    async def _run(self, watched: _Watched) -> None:
        async for item in watch_forever(self.api, watched.kind, watched.selectors, timings=self.timings):
            if isinstance(item, Listed):
                old = watched.objects
                watched.objects = {}
                for raw in item.items:
                    self._put(watched, raw, old)
                for ref in old.keys() - watched.objects.keys():
                    self._errors.pop((watched.kind.kind, ref), None)
                changed = old != watched.objects or not watched.listed.is_set()
                watched.listed.set()
            else:
                before = dict(watched.objects)
                if item.type == "DELETED":
                    ref = _ref_of(watched.kind, item.object)
                    if ref is not None:
                        watched.objects.pop(ref, None)
                        self._errors.pop((watched.kind.kind, ref), None)
                else:
                    self._put(watched, item.object, watched.objects)
                changed = before != watched.objects
            if changed:
                self._dirty.set()

    def _put(self, watched: _Watched, raw: dict[str, Any], previous: Mapping[ObjectRef, Resource]) -> None:
        ref = _ref_of(watched.kind, raw)
        try:
            resource = parse_resource(raw)
        except UnknownKind:
            return
        except InvalidResource as exc:
            message = str(exc)
            kept = previous.get(ref) if ref is not None else None
            if kept is not None and ref is not None:
                watched.objects[ref] = kept
                message += " (keeping the last valid version)"
            if ref is not None and self._errors.get((watched.kind.kind, ref)) != message:
                log.error("kubernetes: %s", message)
                self._errors[(watched.kind.kind, ref)] = message
            return
        key = resource.meta.ref if watched.kind.namespaced else ObjectRef("", resource.meta.name)
        watched.objects[key] = resource
        self._errors.pop((watched.kind.kind, key), None)

    def _sync_pod_watches(self) -> None:
        """One pod watch per distinct (namespace, selector) of the known pools; stop the unused ones."""
        if self._closed:
            return
        wanted = {pod_selector(pool) for pool in self._objects_of(POOLS_V1ALPHA2, POOLS).values()
                  if isinstance(pool, InferencePool)}
        for key in self._pod_watches.keys() - wanted:
            watched = self._pod_watches.pop(key)
            if watched.task is not None:
                watched.task.cancel()
                self._stopped.add(watched.task)
                watched.task.add_done_callback(self._stopped.discard)
            self._dirty.set()
        for key in wanted - self._pod_watches.keys():
            namespace, labels = key
            watched = _Watched(PODS, Selectors(namespace, labels=labels))
            self._pod_watches[key] = watched
            self._start(watched, f"watch-pods-{namespace}-{labels}")


def _ref_of(kind: Kind, raw: Mapping[str, Any]) -> ObjectRef | None:
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    if not kind.namespaced:
        return ObjectRef("", meta["name"])
    return ObjectRef(str(meta.get("namespace") or "default"), meta["name"])


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)
    else:
        log.error("background task %s returned unexpectedly", task.get_name())

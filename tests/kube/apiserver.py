"""An in-process Kubernetes API server stand-in that speaks the real REST protocol, for tests.

The router's real `kubernetes_asyncio` client talks to it over loopback HTTP: lists carry a
resourceVersion, watches are chunked streams of JSON lines (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR)
that resume from a resourceVersion, an expired resourceVersion gets an ERROR event carrying a 410
`Expired` Status, updates and patches are checked against `metadata.resourceVersion` (409 `Conflict`),
the status subresource only changes `status` and the main resource never does, `generation` counts spec
changes, label and field selectors filter lists and watches (an object that stops matching is sent as
DELETED), an unknown API group answers `404 page not found`. Leases are ordinary objects.

Tests drive it two ways: through HTTP like any client, and through `apply`/`remove`/`get` for fixtures.
Faults are explicit calls: `drop_watches()` cuts every open stream, `compact()` expires old
resourceVersions, `restart()` comes back on the same port with new resourceVersions, `stop()`/`start()`
take the API down, `interfere(...)` makes another writer change an object just before the next write.
Its answers are checked against recorded real API responses in `test_apiserver.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web


class ApiResource(NamedTuple):
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`plural.group` as the API server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


GATEWAY = "gateway.networking.k8s.io"
INFERENCE = "inference.networking.k8s.io"
INFERENCE_X = "inference.networking.x-k8s.io"

RESOURCES: tuple[ApiResource, ...] = (
    ApiResource("", "v1", "pods", "Pod", True, True),
    ApiResource("", "v1", "namespaces", "Namespace", False, True),
    ApiResource("", "v1", "services", "Service", True, True),
    ApiResource("coordination.k8s.io", "v1", "leases", "Lease", True, False),
    ApiResource(GATEWAY, "v1", "gatewayclasses", "GatewayClass", False, True),
    ApiResource(GATEWAY, "v1", "gateways", "Gateway", True, True),
    ApiResource(GATEWAY, "v1", "httproutes", "HTTPRoute", True, True),
    ApiResource(GATEWAY, "v1beta1", "referencegrants", "ReferenceGrant", True, False),
    ApiResource(INFERENCE, "v1", "inferencepools", "InferencePool", True, True),
    ApiResource(INFERENCE_X, "v1alpha2", "inferencepools", "InferencePool", True, True),
    ApiResource(INFERENCE_X, "v1alpha2", "inferenceobjectives", "InferenceObjective", True, True),
)
BUILTIN_GROUPS = frozenset({"", "coordination.k8s.io"})
# Built-in list items carry no kind/apiVersion; custom resources' items do.

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


class Event(NamedTuple):
    rv: int
    resource: ApiResource
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class _Watch:
    resource: ApiResource
    namespace: str | None
    labels: str
    fields: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    response: web.StreamResponse | None = None
    request: web.Request | None = None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_label_selector(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """`a=b,c!=d,e,!f,g in (h,i),j notin (k)` as (key, op, values)."""
    out: list[tuple[str, str, frozenset[str]]] = []
    text = text.strip()
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text:
        parts.append(text[start:])
    for part in (p.strip() for p in parts):
        if " notin " in part or " in " in part:
            key, op, rest = part.partition(" notin ") if " notin " in part else part.partition(" in ")
            values = frozenset(v.strip() for v in rest.strip().strip("()").split(","))
            out.append((key.strip(), op.strip(), values))
        elif "!=" in part:
            key, _, value = part.partition("!=")
            out.append((key.strip(), "!=", frozenset({value.strip()})))
        elif "==" in part or "=" in part:
            key, _, value = part.partition("==") if "==" in part else part.partition("=")
            out.append((key.strip(), "=", frozenset({value.strip()})))
        elif part.startswith("!"):
            out.append((part[1:].strip(), "!", frozenset()))
        else:
            out.append((part, "exists", frozenset()))
    return out


def labels_match(selector: str, labels: dict[str, str]) -> bool:
    for key, op, values in parse_label_selector(selector):
        present = key in labels
        if op == "=" and (not present or labels[key] not in values):
            return False
        if op == "!=" and present and labels[key] in values:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def fields_match(selector: str, obj: dict[str, Any]) -> bool:
    """metadata.name / metadata.namespace / status.phase / spec.nodeName, with = and !=."""
    for part in filter(None, (p.strip() for p in selector.split(","))):
        negate = "!=" in part
        key, _, value = part.partition("!=") if negate else part.partition("==" if "==" in part else "=")
        cur: Any = obj
        for step in key.strip().split("."):
            cur = cur.get(step) if isinstance(cur, dict) else None
        matches = (cur or "") == value.strip()
        if matches == negate:
            return False
    return True


class FakeApiServer:
    """Objects by resource and key, one resourceVersion counter, an event history for watch resumption."""

    def __init__(self, *, host: str = "127.0.0.1", resources: tuple[ApiResource, ...] = RESOURCES,
                 bookmark_interval: float = 0.5) -> None:
        self.host = host
        self.port = 0
        self.bookmark_interval = bookmark_interval
        self.resources = {(r.group, r.version, r.plural): r for r in resources}
        self.objects: dict[ApiResource, dict[Key, dict[str, Any]]] = {r: {} for r in resources}
        self.rv = 100
        self.compacted = 0  # resourceVersions at or below this are expired (410)
        self.history: list[Event] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query) as received
        self._watches: set[_Watch] = set()
        self._interference: dict[tuple[str, Key], Callable[[dict[str, Any]], None]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "stand-in",
                          "context": {"cluster": "stand-in", "user": "tester", "namespace": namespace}}],
        }

    async def start(self, port: int | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port if port is None else port)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Take the API down: open watches are cut and the port stops accepting."""
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, *, rv_jump: int = 100_000) -> None:
        """Come back on the same port with resourceVersions no client has seen: every old one is expired."""
        await self.stop()
        self.rv += rv_jump
        self.compact()
        await self.start(self.port)

    # --- faults -----------------------------------------------------------------------------------

    def drop_watches(self) -> None:
        """Cut every open watch stream mid-flight (the connection closes without the final chunk)."""
        for watch in list(self._watches):
            if watch.request is not None and watch.request.transport is not None:
                watch.request.transport.close()
            watch.queue.put_nowait(None)
        self._watches.clear()

    def compact(self) -> None:
        """Expire the history: a watch from any resourceVersion seen so far gets 410 Gone."""
        self.compacted = self.rv
        self.history.clear()

    def interfere(self, plural: str, namespace: str, name: str,
                  mutate: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Before the next write to this object, another writer changes it (by default an annotation), so
        a write carrying the old resourceVersion gets 409 Conflict."""
        def default(obj: dict[str, Any]) -> None:
            obj.setdefault("metadata", {}).setdefault("annotations", {})["other-writer"] = str(self.rv)
        self._interference[(plural, (namespace, name))] = mutate or default

    # --- direct access for fixtures ---------------------------------------------------------------

    def resource_of(self, api_version: str, kind: str) -> ApiResource:
        group, _, version = api_version.rpartition("/")
        for r in self.resources.values():
            if r.group == group and r.version == version and r.kind == kind:
                return r
        raise KeyError(f"{api_version} {kind}")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (spec and status both), as a fixture would."""
        r = self.resource_of(obj["apiVersion"], obj["kind"])
        key = self._key(r, obj)
        current = self.objects[r].get(key)
        new = copy.deepcopy(obj)
        if current is None:
            return self._create(r, new)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self._update(r, current, new, subresource=None, force=True)

    def remove(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        r = self.resource_of(api_version, kind)
        key = (namespace if r.namespaced else "", name)
        obj = self.objects[r].pop(key, None)
        if obj is not None:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(Event(self.rv, r, "DELETED", obj, None))

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        r = self.resource_of(api_version, kind)
        found = self.objects[r].get((namespace if r.namespaced else "", name))
        return copy.deepcopy(found) if found is not None else None

    def requests_to(self, plural: str, method: str = "GET") -> list[tuple[str, str, dict[str, str]]]:
        return [req for req in self.requests if req[0] == method and f"/{plural}" in req[1]]

    # --- object store -----------------------------------------------------------------------------

    def _key(self, r: ApiResource, obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return ((meta.get("namespace") or "default") if r.namespaced else "", meta["name"])

    def _stamp(self, r: ApiResource, obj: dict[str, Any]) -> None:
        obj["apiVersion"] = r.api_version
        obj["kind"] = r.kind

    def _create(self, r: ApiResource, obj: dict[str, Any]) -> dict[str, Any]:
        self._stamp(r, obj)
        key = self._key(r, obj)
        meta = obj.setdefault("metadata", {})
        if r.namespaced:
            meta["namespace"] = key[0]
        else:
            meta.pop("namespace", None)
        if key in self.objects[r]:
            raise ApiError(409, "AlreadyExists", f'{r.qualified} "{key[1]}" already exists',
                           {"name": key[1], "group": r.group, "kind": r.plural})
        self.rv += 1
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(self.rv)
        meta["creationTimestamp"] = now_rfc3339()
        if r.kind == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = key[1]
        if r.kind != "Lease":
            meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        self.objects[r][key] = obj
        self._emit(Event(self.rv, r, "ADDED", copy.deepcopy(obj), None))
        return copy.deepcopy(obj)

    def _update(self, r: ApiResource, current: dict[str, Any], new: dict[str, Any], *,
                subresource: str | None, force: bool = False) -> dict[str, Any]:
        key = self._key(r, current)
        interference = self._interference.pop((r.plural, key), None)
        if interference is not None:
            other = copy.deepcopy(current)
            interference(other)
            current = self._update(r, current, other, subresource=None, force=True)
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"] and not force:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {r.qualified} "{key[1]}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": key[1], "group": r.group, "kind": r.plural})
        result = copy.deepcopy(current)
        if subresource == "status":
            result["status"] = copy.deepcopy(new.get("status"))
            if result["status"] is None:
                result.pop("status")
        else:
            for k, v in new.items():
                if k in ("apiVersion", "kind", "metadata"):
                    continue
                if k == "status" and r.status_subresource and not force:
                    continue
                result[k] = copy.deepcopy(v)
            for k in list(result):
                if k not in new and k not in ("apiVersion", "kind", "metadata") and \
                        not (k == "status" and r.status_subresource and not force):
                    del result[k]
            meta = result["metadata"]
            new_meta = new.get("metadata") or {}
            for k in ("labels", "annotations", "finalizers", "ownerReferences"):
                if k in new_meta:
                    meta[k] = copy.deepcopy(new_meta[k])
                else:
                    meta.pop(k, None)
            if r.kind == "Namespace":
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = key[1]
            if r.kind != "Lease" and result.get("spec") != current.get("spec"):
                meta["generation"] = int(meta.get("generation", 1)) + 1
        if result == current:
            return result  # a no-op write does not change the resourceVersion (as the API server does)
        self.rv += 1
        result["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[r][key] = result
        self._emit(Event(self.rv, r, "MODIFIED", copy.deepcopy(result), copy.deepcopy(current)))
        return copy.deepcopy(result)

    def _emit(self, event: Event) -> None:
        self.history.append(event)
        for watch in list(self._watches):
            if watch.resource == event.resource:
                watch.queue.put_nowait(event)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.method, request.path, query))
        try:
            r, namespace, name, subresource = self._route(request.path)
            if request.method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch(request, r, namespace, query)
            if request.method == "GET" and name is None:
                return self._json(self._list(r, namespace, query))
            if name is None and request.method == "POST":
                body = await request.json()
                if r.namespaced:
                    body.setdefault("metadata", {})["namespace"] = namespace
                return self._json(self._create(r, body), 201)
            if name is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            key = (namespace or "" if r.namespaced else "", name)
            current = self.objects[r].get(key)
            if current is None:
                raise ApiError(404, "NotFound", f'{r.qualified} "{name}" not found',
                               {"name": name, "group": r.group, "kind": r.plural})
            if request.method == "GET":
                return self._json(copy.deepcopy(current))
            if request.method == "PUT":
                body = await request.json()
                return self._json(self._update(r, current, body, subresource=subresource))
            if request.method == "PATCH":
                return self._json(self._patch(r, current, await request.read(),
                                              request.content_type, subresource))
            if request.method == "DELETE":
                self.remove(r.api_version, r.kind, name, key[0])
                return self._json(current)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        except ApiError as exc:
            return self._json(exc.body, exc.code)
        except _NoRoute:
            return web.Response(status=404, text="404 page not found\n", content_type="text/plain")

    def _route(self, path: str) -> tuple[ApiResource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _NoRoute
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise _NoRoute
        r = self.resources.get((group, version, rest[0]))
        if r is None:
            if any(g == group and v == version for g, v, _ in self.resources):
                raise ApiError(404, "NotFound", "the server could not find the requested resource",
                               {})
            raise _NoRoute
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and (subresource != "status" or not r.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if r.namespaced and name is not None and namespace is None:
            raise _NoRoute
        return r, namespace, name, subresource

    def _json(self, body: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")

    def _matches(self, r: ApiResource, obj: dict[str, Any], namespace: str | None, labels: str,
                 fields: str) -> bool:
        meta = obj.get("metadata") or {}
        if r.namespaced and namespace is not None and meta.get("namespace") != namespace:
            return False
        if labels and not labels_match(labels, meta.get("labels") or {}):
            return False
        return not fields or fields_match(fields, obj)

    def _list(self, r: ApiResource, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        items = []
        for key in sorted(self.objects[r]):
            obj = self.objects[r][key]
            if self._matches(r, obj, namespace, labels, fields):
                item = copy.deepcopy(obj)
                if r.group in BUILTIN_GROUPS:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                items.append(item)
        if r.group in BUILTIN_GROUPS:
            return {"kind": f"{r.kind}List", "apiVersion": r.api_version,
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        return {"apiVersion": r.api_version, "items": items, "kind": f"{r.kind}List",
                "metadata": {"continue": "", "resourceVersion": str(self.rv)}}

    def _patch(self, r: ApiResource, current: dict[str, Any], raw: bytes, content_type: str,
               subresource: str | None) -> dict[str, Any]:
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml")
        patch = json.loads(raw)
        new = merge_patch(current, patch)
        wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
        new.setdefault("metadata", {})["resourceVersion"] = wanted_rv or current["metadata"]["resourceVersion"]
        if not wanted_rv:
            new["metadata"]["resourceVersion"] = None
        return self._update(r, current, new, subresource=subresource)

    async def _watch(self, request: web.Request, r: ApiResource, namespace: str | None,
                     query: dict[str, str]) -> web.StreamResponse:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        since_text = query.get("resourceVersion", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Transfer-Encoding": "chunked"})
        await response.prepare(request)
        watch = _Watch(r, namespace, labels, fields, response=response, request=request)

        async def send(event_type: str, obj: dict[str, Any]) -> None:
            await response.write(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

        since = int(since_text) if since_text.isdigit() else 0
        if since and since <= self.compacted:
            await send("ERROR", status_body(410, "Expired",
                                            f"too old resource version: {since} ({self.compacted + 1})"))
            return response
        self._watches.add(watch)
        try:
            if not since:
                for key in sorted(self.objects[r]):
                    obj = self.objects[r][key]
                    if self._matches(r, obj, namespace, labels, fields):
                        await send("ADDED", copy.deepcopy(obj))
            else:
                for event in [e for e in self.history if e.resource == r and e.rv > since]:
                    await self._send_event(watch, event, send)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left) if wait is not None else left
                try:
                    event = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    if bookmarks:
                        await send("BOOKMARK", {"kind": r.kind, "apiVersion": r.api_version,
                                                "metadata": {"resourceVersion": str(self.rv)}})
                    continue
                if event is None:
                    return response  # dropped: the transport is already closed
                await self._send_event(watch, event, send)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._watches.discard(watch)
        return response

    async def _send_event(self, watch: _Watch, event: Event, send: Any) -> None:
        r = watch.resource
        now = self._matches(r, event.obj, watch.namespace, watch.labels, watch.fields)
        before = event.old is not None and self._matches(r, event.old, watch.namespace, watch.labels, watch.fields)
        if event.type == "MODIFIED":
            if now and not before:
                await send("ADDED", event.obj)
            elif before and not now:
                await send("DELETED", event.obj)
            elif now:
                await send("MODIFIED", event.obj)
        elif now:
            await send(event.type, event.obj)


class _NoRoute(Exception):
    pass

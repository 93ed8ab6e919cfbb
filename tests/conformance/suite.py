"""The conformance-style harness: echo backends as pods, the base resources, the router in file mode.

Upstream conformance runs against a cluster; here the same resources are written to a manifest directory
and served by the real router (`--config-dir`, which feeds the same reconcile as Kubernetes mode). Pods are
echo servers on loopback addresses that answer with what they received and who they are, like Gateway
API's echo-basic. The router routes only to InferencePools, so every Service backend of the Gateway API
tests becomes an InferencePool of the same name selecting that backend's pods.

Gateways listen on free ports instead of 80 (one port per Gateway, since every Gateway shares this host);
manifests name them `${PORT:<key>}` and the harness substitutes a free port per key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tests.integration.harness import RunningRouter, free_port, start_router, write_manifests

INFRA = "gateway-conformance-infra"
APP_BACKEND = "gateway-conformance-app-backend"
WEB_BACKEND = "gateway-conformance-web-backend"
GAIE_INFRA = "inference-conformance-infra"
GAIE_APP = "inference-conformance-app-backend"

POOL_GROUP = "inference.networking.k8s.io"
CONTROLLER = "volcano.sh/kthena-router"
SELECTION_HEADER = "test-epp-endpoint-selection"
SERVED_HEADER = "x-conformance-test-served-endpoint"
GAIE_BODY = {"model": "conformance-fake-model", "prompt": "Write as if you were a critic: San Francisco"}


@dataclass(frozen=True, slots=True)
class Backend:
    """A Deployment of echo pods standing in for a Service (Gateway API) or a model server (GAIE)."""

    name: str  # also the InferencePool's name
    namespace: str
    ips: tuple[str, ...]
    ports: tuple[str, ...] = ("backend",)  # port keys: one free port each, shared by every pod
    endpoint_picker: tuple[str, str] | None = None  # (Service name, failureMode), as upstream declares it
    app_protocol: str | None = None

    def pod_name(self, ip: str) -> str:
        return f"{self.name}-{self.ips.index(ip)}"


# Gateway API base: three infra backends, two app backends, one web backend (two pods each).
GATEWAY_API_BACKENDS = (
    Backend("infra-backend-v1", INFRA, ("127.0.0.21", "127.0.0.22")),
    Backend("infra-backend-v2", INFRA, ("127.0.0.23", "127.0.0.24")),
    Backend("infra-backend-v3", INFRA, ("127.0.0.25", "127.0.0.26")),
    Backend("app-backend-v1", APP_BACKEND, ("127.0.0.27", "127.0.0.28")),
    Backend("app-backend-v2", APP_BACKEND, ("127.0.0.29", "127.0.0.30")),
    Backend("web-backend", WEB_BACKEND, ("127.0.0.31", "127.0.0.32")),
)

# Inference extension base: three model-server pods per pool; the data-parallel one serves three ports.
GAIE_BACKENDS = (
    Backend("primary-inference-pool", GAIE_APP, ("127.0.0.41", "127.0.0.42", "127.0.0.43"), ("gaie-3000",),
            ("primary-endpoint-picker-svc", "FailClose")),
    Backend("secondary-inference-pool", GAIE_APP, ("127.0.0.44", "127.0.0.45", "127.0.0.46"), ("gaie-3000",),
            ("secondary-endpoint-picker-svc", "FailOpen")),
    Backend("dp-inference-pool", GAIE_APP, ("127.0.0.47", "127.0.0.48", "127.0.0.49"),
            ("gaie-3000", "gaie-3002", "gaie-3004"), ("dp-endpoint-picker-svc", "FailClose")),
    # Upstream's appprotocol-inference-model-server pods: HTTP/1.1 on 3000 (this pool) and h2c on 3001 (the
    # h2c pool, which InferencePoolAppProtocol declares over the same pods).
    Backend("appprotocol-http-inference-pool", GAIE_APP, ("127.0.0.50", "127.0.0.51", "127.0.0.52"),
            ("gaie-3000",), ("appprotocol-http-endpoint-picker-svc", "FailClose"), "http"),
)


def _namespace(name: str, labels: dict[str, str]) -> str:
    # The API server labels every Namespace with its name; a manifest directory has to say so itself.
    labels = {"kubernetes.io/metadata.name": name, **labels}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})


def _backend_docs(backend: Backend) -> list[str]:
    labels = {"app": backend.name}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels},
                            "targetPorts": [{"number": f"${{PORT:{key}}}"} for key in backend.ports]}
    if backend.endpoint_picker is not None:
        # Declared as upstream does; the router picks endpoints itself and, in file mode, does not look
        # the Service up.
        service, failure_mode = backend.endpoint_picker
        spec["endpointPickerRef"] = {"name": service, "port": {"number": 9002}, "failureMode": failure_mode}
    if backend.app_protocol is not None:
        spec["appProtocol"] = backend.app_protocol
    docs = [yaml.safe_dump({
        "apiVersion": f"{POOL_GROUP}/v1", "kind": "InferencePool",
        "metadata": {"name": backend.name, "namespace": backend.namespace}, "spec": spec,
    })]
    for ip in backend.ips:
        docs.append(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": backend.pod_name(ip), "namespace": backend.namespace, "labels": labels},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    return docs


def _gateway(name: str, namespace: str, listener: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"gatewayClassName": "kthena-router", "listeners": [listener]},
    })


def gateway_api_base() -> list[str]:
    """Gateway API's base: namespaces, Gateways same-namespace / all-namespaces / backend-namespaces, backends."""
    docs = [
        _namespace(INFRA, {"gateway-conformance": "infra"}),
        _namespace(APP_BACKEND, {"gateway-conformance": "backend"}),
        _namespace(WEB_BACKEND, {"gateway-conformance": "backend"}),
        _gateway("same-namespace", INFRA, {"name": "http", "port": "${PORT:same-namespace}", "protocol": "HTTP",
                                           "allowedRoutes": {"namespaces": {"from": "Same"}}}),
        _gateway("all-namespaces", INFRA, {"name": "http", "port": "${PORT:all-namespaces}", "protocol": "HTTP",
                                           "allowedRoutes": {"namespaces": {"from": "All"}}}),
        _gateway("backend-namespaces", INFRA, {
            "name": "http", "port": "${PORT:backend-namespaces}", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {
                "matchLabels": {"gateway-conformance": "backend"}}}}}),
    ]
    for backend in GATEWAY_API_BACKENDS:
        docs += _backend_docs(backend)
    return docs


def gaie_base() -> list[str]:
    """The inference extension's base: Gateways conformance-primary / -secondary and the model-server pools."""
    docs = [
        _namespace(GAIE_INFRA, {"gateway-conformance": "infra"}),
        _namespace(GAIE_APP, {"gateway-conformance": "backend"}),
        _gateway("conformance-primary", GAIE_INFRA, {
            "name": "http", "port": "${PORT:conformance-primary}", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "HTTPRoute"}]}}),
        _gateway("conformance-secondary", GAIE_INFRA, {
            "name": "http", "port": "${PORT:conformance-secondary}", "protocol": "HTTP",
            "hostname": "secondary.example.com", "allowedRoutes": {"namespaces": {"from": "All"}}}),
    ]
    for backend in GAIE_BACKENDS:
        docs += _backend_docs(backend)
    return docs


@dataclass(slots=True)
class Reply:
    """One answer through the router; `echo` is the backend's report when a pod answered."""

    status: int
    headers: CIMultiDictProxy[str]
    echo: dict[str, Any] | None
    text: str

    @property
    def pod(self) -> str | None:
        return None if self.echo is None else self.echo["pod"]

    @property
    def backend(self) -> str | None:
        return None if self.echo is None else self.echo["service"]

    @property
    def namespace(self) -> str | None:
        return None if self.echo is None else self.echo["namespace"]

    def response_header(self, name: str) -> str | None:
        """A response header as a client sees it: repeated fields joined with commas, None when absent."""
        values = self.headers.getall(name, [])
        return ",".join(values) if values else None

    def header(self, name: str) -> list[str]:
        """A header the backend received (values in order), [] when absent."""
        assert self.echo is not None
        for key, values in self.echo["headers"].items():
            if key.lower() == name.lower():
                return values
        return []


_BY_IP: web.AppKey[dict[str, Backend]] = web.AppKey("by_ip", dict)
_PORT_TOKEN = re.compile(r"['\"]?\$\{PORT:([A-Za-z0-9_.-]+)\}['\"]?")


@dataclass
class Conformance:
    """A running router over a manifest directory, echo pods, and the calls that drive and inspect both."""

    directory: Path
    backends: tuple[Backend, ...]
    ports: dict[str, int] = field(default_factory=dict)
    router: RunningRouter | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _gateway_ports: dict[str, int] = field(default_factory=dict)

    # --- setup -------------------------------------------------------------------------------------

    def port(self, key: str) -> int:
        if key not in self.ports:
            self.ports[key] = free_port("127.0.0.1", *(ip for b in self.backends for ip in b.ips))
        return self.ports[key]

    def _render(self, text: str) -> str:
        rendered = _PORT_TOKEN.sub(lambda m: str(self.port(m.group(1))), text)
        for doc in yaml.safe_load_all(rendered):
            if doc and doc.get("kind") == "Gateway":
                ref = f"{doc['metadata'].get('namespace', 'default')}/{doc['metadata']['name']}"
                self._gateway_ports[ref] = doc["spec"]["listeners"][0]["port"]
        return rendered

    async def start(self, base: list[str], manifests: dict[str, str], **settings: Any) -> None:
        """Start the echo pods, write the base and the test's manifests, start the router on them."""
        self._runner = await _start_echo(self.backends, self.port)
        write_manifests(self.directory, "base.yaml", *(self._render(doc) for doc in base))
        for name, text in manifests.items():
            write_manifests(self.directory, name, self._render(text))
        # Echo pods expose no model-server metrics: scrape rarely, so the scheduler sees equal endpoints.
        settings.setdefault("scrape_interval", 60.0)
        self.router = await start_router(self.directory, **settings)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        assert self.router.app.state.config_errors == [], self.router.app.state.config_errors

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.router is not None:
            await self.router.app.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()

    async def apply(self, name: str, text: str | None) -> None:
        """Write (or with None remove) one manifest file and wait until the router has reconciled it."""
        assert self.router is not None
        before = self.router.app.state.snapshot.version
        path = self.directory / name
        if text is None:
            path.unlink()
        else:
            tmp = self.directory / f".{name}.tmp"
            tmp.write_text(self._render(text))
            tmp.rename(path)
        await self.router.wait_for(lambda app: app.state.snapshot.version > before)

    async def eventually(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        assert self.router is not None
        await self.router.wait_for(lambda _app: predicate(), timeout)

    # --- traffic -----------------------------------------------------------------------------------

    async def request(self, gateway: str, path: str, *, host: str | None = None, method: str = "GET",
                      headers: dict[str, str] | None = None, json: Any = None, port: int | None = None) -> Reply:
        """One request to a Gateway ("namespace/name"): its first listener's port unless `port` is given."""
        assert self._session is not None
        url = f"http://127.0.0.1:{port or self._gateway_ports[gateway]}{path}"
        send = dict(headers or {})
        if host is not None:
            send["Host"] = host
        async with self._session.request(method, url, headers=send, json=json, allow_redirects=False) as resp:
            text = await resp.text()
            echo = None
            if resp.headers.get("X-Echo-Pod") is not None:
                echo = await resp.json()
            return Reply(resp.status, CIMultiDictProxy(CIMultiDict(resp.headers)), echo, text)

    def listener_port(self, gateway: str) -> int:
        return self._gateway_ports[gateway]

    # --- status ------------------------------------------------------------------------------------

    @property
    def statuses(self) -> dict[str, Any]:
        assert self.router is not None
        return self.router.app.state.statuses

    def gateway_status(self, ref: str) -> dict[str, Any]:
        return self.statuses["gateways"][ref]

    def route_parent(self, route: str, gateway: str) -> dict[str, Any] | None:
        """The route's status entry for the Gateway "namespace/name", None when there is none."""
        for parent in self.statuses["httproutes"].get(route, {}).get("parents", []):
            ref = parent["parentRef"]
            if f"{ref.get('namespace', route.split('/')[0])}/{ref['name']}" == gateway:
                return parent
        return None

    def pool_parent(self, pool: str, gateway: str) -> dict[str, Any] | None:
        for parent in self.statuses["inferencepools"].get(pool, {}).get("parents", []):
            ref = parent["parentRef"]
            if f"{ref['namespace']}/{ref['name']}" == gateway:
                return parent
        return None


def condition(entry: dict[str, Any] | None, type_: str) -> tuple[str, str] | None:
    """(status, reason) of a condition in a status or status.parents[] entry."""
    if entry is None:
        return None
    for c in entry.get("conditions", []):
        if c["type"] == type_:
            return c["status"], c["reason"]
    return None


def pool_conditions(conf: Conformance, pool: str, gateway: str) -> dict[str, tuple[str, str]]:
    parent = conf.pool_parent(pool, gateway)
    assert parent is not None, f"InferencePool {pool} has no status for Gateway {gateway}: {conf.statuses}"
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


def backend_by_name(backends: Iterable[Backend], name: str) -> Backend:
    (found,) = [b for b in backends if b.name == name]
    return found


def route_conditions(conf: Conformance, route: str, gateway: str) -> dict[str, tuple[str, str]]:
    parent = conf.route_parent(route, gateway)
    assert parent is not None, f"HTTPRoute {route} has no status for Gateway {gateway}: {conf.statuses}"
    assert parent["controllerName"] == CONTROLLER
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


def assert_route_accepted_and_resolved(conf: Conformance, route: str, gateway: str) -> None:
    got = route_conditions(conf, route, gateway)
    assert got["Accepted"] == ("True", "Accepted"), got
    assert got["ResolvedRefs"] == ("True", "ResolvedRefs"), got


def assert_redirect(reply: Reply, status: int, *, scheme: str = "http", host: str | None = None,
                    port: int | None = None, path: str | None = None) -> None:
    """The router's redirect: status and Location parts; `port` None means the Location names no port."""
    assert reply.status == status and reply.echo is None, (reply.status, reply.text)
    location = URL(reply.headers["Location"])
    assert location.scheme == scheme, location
    if host is not None:
        assert location.host == host, location
    assert location.explicit_port == port, location
    if path is not None:
        assert location.path == path, location


async def expect(conf: Conformance, gateway: str, cases: Iterable[tuple[dict[str, Any], Any]]) -> None:
    """Each (request kwargs, expected): a backend name, or an int status the router itself answers."""
    failures = []
    for req, want in cases:
        reply = await conf.request(gateway, **req)
        if isinstance(want, int):
            ok = reply.status == want and reply.echo is None
        else:
            ok = reply.status == 200 and reply.backend == want
        if not ok:
            failures.append(f"{req} -> {reply.status} {reply.backend or reply.text[:120]!r}, want {want}")
    assert not failures, "\n".join(failures)


# (path, headers sent, headers the backend must receive joined by commas, headers it must not receive):
# Gateway API's request header modifier cases, shared by the rule-level and backendRef-level tests.
REQUEST_HEADER_CASES: tuple[tuple[str, dict[str, str], dict[str, str], tuple[str, ...]], ...] = (
    ("/set", {"Some-Other-Header": "val"},
     {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, ()),
    ("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
     {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, ()),
    ("/add", {"Some-Other-Header": "val"},
     {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}, ()),
    ("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
     {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}, ()),
    ("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
    ("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                   "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val"},
     {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1",
      "X-Header-Add-2": "add-val-2,header-add-2", "X-Header-Add-3": "header-add-3",
      "Another-Header": "another-header-val"}, ("X-Header-Remove-1", "X-Header-Remove-2")),
    ("/case-insensitivity", {"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                             "x-header-remove": "original-val-remove", "Another-Header": "another-header-val"},
     {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
      "Another-Header": "another-header-val"}, ("x-header-remove", "X-Header-Remove")),
)


async def check_request_headers(conf: Conformance, gateway: str, cases, backend: str = "infra-backend-v1") -> None:
    """Send each case and compare what the backend received."""
    for path, sent, want, absent in cases:
        reply = await conf.request(gateway, path, headers=sent)
        assert reply.status == 200 and reply.backend == backend, (path, reply.status, reply.text[:200])
        for name, value in want.items():
            assert ",".join(reply.header(name)) == value, (path, name, reply.echo["headers"])
        for name in absent:
            assert reply.header(name) == [], (path, name)


# --- echo pods -------------------------------------------------------------------------------------

async def _echo(request: web.Request) -> web.Response:
    ip, port = request.transport.get_extra_info("sockname")[:2]
    backend: Backend = request.app[_BY_IP][ip]
    delay = request.query.get("delay")
    if delay:
        await asyncio.sleep(_duration(delay))
    # Like echo-basic: `X-Echo-Set-Header: Name:value,Other:value` sets response headers.
    extra: list[tuple[str, str]] = []
    for item in request.headers.get("X-Echo-Set-Header", "").split(","):
        name, sep, value = item.partition(":")
        if sep:
            extra.append((name.strip(), value.strip()))
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name, []).append(value)
    body = {
        "path": request.raw_path, "host": request.host, "method": request.method,
        "proto": f"HTTP/{request.version.major}.{request.version.minor}", "headers": headers,
        "namespace": backend.namespace, "ingress": "", "service": backend.name,
        "pod": backend.pod_name(ip), "httpPort": str(port),
    }
    response = web.json_response(body, headers={"X-Echo-Pod": backend.pod_name(ip)})
    for name, value in extra:
        response.headers.add(name, value)
    return response


def _duration(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


async def _start_echo(backends: Iterable[Backend], port_of: Callable[[str], int]) -> web.AppRunner:
    app = web.Application()
    backends = tuple(backends)
    app[_BY_IP] = {ip: b for b in backends for ip in b.ips}
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    for backend in backends:
        for ip in backend.ips:
            for key in backend.ports:
                await web.TCPSite(runner, ip, port_of(key), reuse_address=True).start()
    return runner

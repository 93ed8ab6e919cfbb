"""Kubernetes mode end to end: the real RouterApp on the API stand-in, simulators as pods, requests through
the router, statuses read back from the stand-in's stored objects, and the API going away."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kthena_router.app import RouterApp
from kthena_router.cli import kube_mode
from kthena_router.settings import Settings
from kthena_router.sim import SimConfig, start_simulator
from kthena_router.sources.kube import KubeApi, api_client
from kthena_router.sources.leader import LeaseTimings
from kthena_router.sources.rbac import CLUSTER_RULES, NAMESPACE_RULES
from tests.integration.harness import free_port
from tests.kube.apiserver import FakeApiServer
from tests.kube.conftest import FAST, write_kubeconfig
from tests.kube.helpers import eventually
from tests.kube.objects import gateway, namespace, pod, pool, route, service

MODEL = "Qwen2.5-0.5B-Instruct"
POD_IP = "127.0.0.21"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sim_port() -> AsyncIterator[int]:
    port = free_port(POD_IP)
    sim = await start_simulator(SimConfig(model=MODEL), POD_IP, port)
    yield port
    await sim.close()


def seed(server: FakeApiServer, sim_port: int, *, other_gateway_port: int) -> None:
    """A route on the router's `default` Gateway (implied until the router creates it), and a Gateway of
    the user's on another port."""
    server.apply(namespace("default"))
    server.apply(gateway("gw", other_gateway_port))
    server.apply(route("r", "default", "p"))
    server.apply(pool("p", sim_port, {"app": "llm"}))
    server.apply(pod("llm-0", POD_IP, {"app": "llm"}))


async def get_status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def complete(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(f"{url}/v1/completions",
                            json={"model": MODEL, "prompt": "hello", "max_tokens": 3}) as resp:
        await resp.read()
        return resp.status


async def test_router_waits_for_the_api_serves_writes_status_survives_an_outage_within_its_rbac(
        tmp_path, sim_port) -> None:
    server = FakeApiServer(bookmark_interval=0.2)
    api_port = free_port()
    server.port = api_port
    client = await api_client(str(write_kubeconfig(server, tmp_path)))
    port = free_port()
    settings = Settings(port=port, host="127.0.0.1", metrics_port=0, debug_port=0, access_log=False,
                        drain_timeout=2.0, leader_election_id="router")
    source, writer = kube_mode(settings, KubeApi(client, request_timeout=2), timings=FAST,
                               lease_timings=LeaseTimings(lease_duration=2, renew_deadline=1.5, retry_period=0.1))
    app = RouterApp(settings, source=source, status_sink=writer)
    running = asyncio.create_task(app.run())
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: app.state.listeners_up or app._listeners is not None)
            await asyncio.sleep(0.3)
            assert await get_status(session, f"{url}/readyz") == 503, "not ready while the API is down"

            seed(server, sim_port, other_gateway_port=free_port())
            await server.start(api_port)
            await eventually(lambda: app.state.ready, timeout=10)
            assert await get_status(session, f"{url}/readyz") == 200
            assert await complete(session, url) == 200

            def stored(plural_kind: tuple[str, str], name: str, ns: str = "default") -> dict:
                return (server.get(*plural_kind, name, ns) or {}).get("status") or {}

            gw_kind = ("gateway.networking.k8s.io/v1", "Gateway")
            await eventually(lambda: bool(stored(gw_kind, "default").get("conditions")), timeout=5)
            assert {c["type"]: c["status"] for c in stored(gw_kind, "default")["conditions"]} == \
                {"Accepted": "True", "Programmed": "True"}
            assert stored(gw_kind, "default")["listeners"][0]["attachedRoutes"] == 1
            await eventually(lambda: bool(stored(gw_kind, "gw").get("conditions")), timeout=5)
            route_kind = ("gateway.networking.k8s.io/v1", "HTTPRoute")
            await eventually(lambda: bool(stored(route_kind, "r").get("parents")))
            route_parents = stored(route_kind, "r")["parents"]
            assert [p["parentRef"]["name"] for p in route_parents] == ["default"]
            pool_kind = ("inference.networking.k8s.io/v1", "InferencePool")
            await eventually(lambda: bool(stored(pool_kind, "p").get("parents")))
            assert stored(pool_kind, "p")["parents"][0]["parentRef"]["name"] == "default"
            assert server.get("coordination.k8s.io/v1", "Lease", "router", "default")["spec"]["holderIdentity"]

            # A pool whose endpointPickerRef names a missing Service: InvalidExtensionRef and a 500.
            server.apply(pool("p", sim_port, {"app": "llm"}, picker_service="epp"))
            await eventually(lambda: any(c["reason"] == "InvalidExtensionRef"
                                         for c in (stored(pool_kind, "p").get("parents") or [{}])[0]
                                         .get("conditions", [])))
            assert await complete(session, url) == 500
            server.apply(service("epp"))
            await eventually(lambda: app.state.snapshot.pools and
                             all(p.unusable_reason is None for p in app.state.snapshot.pools.values()))
            assert await complete(session, url) == 200

            # The API goes away: traffic keeps flowing on the last known state.
            await server.stop()
            await asyncio.sleep(0.3)
            assert await complete(session, url) == 200
            assert await get_status(session, f"{url}/readyz") == 200
    finally:
        app.request_stop()
        await asyncio.wait_for(running, 10)
        await server.stop()
        await client.close()
    assert not not_granted(server.requests), "every API request is granted by the documented RBAC rules"


def verb_and_resource(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str]:
    """(verb, API group, resource[/subresource]) of one request, as RBAC sees it."""
    parts = [p for p in path.split("/") if p]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if method == "GET":
        verb = "watch" if query.get("watch") else ("get" if len(rest) > 1 else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return verb, group, resource


def not_granted(requests: list[tuple[str, str, dict[str, str]]]) -> set[tuple[str, str, str]]:
    """The (verb, group, resource) of requests that the rules in `kthena_router.sources.rbac` do not grant."""
    granted = {(verb, rule.api_group, resource) for rule in (*CLUSTER_RULES, *NAMESPACE_RULES)
               for resource in rule.resources for verb in rule.verbs}
    return {verb_and_resource(*req) for req in requests} - granted


async def test_a_stop_while_the_api_is_unreachable_shuts_down_promptly(tmp_path) -> None:
    server = FakeApiServer()
    server.port = free_port()  # never started
    client = await api_client(str(write_kubeconfig(server, tmp_path)))
    settings = Settings(port=free_port(), host="127.0.0.1", metrics_port=0, debug_port=0, access_log=False,
                        drain_timeout=1.0)
    source, writer = kube_mode(settings, KubeApi(client, request_timeout=1), timings=FAST)
    app = RouterApp(settings, source=source, status_sink=writer)
    running = asyncio.create_task(app.run())
    try:
        await asyncio.sleep(0.3)
        app.request_stop()
        await asyncio.wait_for(running, 5)
    finally:
        await client.close()


async def _run_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kthena_router", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_the_command_without_any_kubernetes_configuration_says_what_to_pass(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = await _run_cli("--port", str(free_port()), "--metrics-port", "0", "--debug-port", "0", env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode != 0
    lines = [line for line in err.decode().splitlines() if "kthena-router:" in line]
    assert len(lines) == 1 and "--config-dir" in lines[0] and "--kubeconfig" in lines[0]


async def test_the_command_with_kubeconfig_serves_from_the_api_and_exits_on_sigterm(apiserver, tmp_path,
                                                                                    sim_port) -> None:
    port = free_port()
    seed(apiserver, sim_port, other_gateway_port=free_port())
    env = {**os.environ, "KUBECONFIG": str(write_kubeconfig(apiserver, tmp_path)), "POD_NAMESPACE": "default"}
    proc = await _run_cli("--port", str(port), "--host", "127.0.0.1", "--metrics-port", "0", "--debug-port", "0",
                          "--access-log=false", env=env)
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while await get_status(session, f"http://127.0.0.1:{port}/readyz") != 200:
                    await asyncio.sleep(0.05)
            assert await complete(session, f"http://127.0.0.1:{port}") == 200
            await eventually(lambda: apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "default",
                                                   "default") is not None, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]

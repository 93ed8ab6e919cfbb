"""The load-aware picker end to end: simulators reporting load, shared prompt prefixes, priorities,
saturation and overload, with the router's scraper reading the simulators' real /metrics."""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from kthena_router.app import RouterApp
from kthena_router.scheduling.framework import ConfigError
from kthena_router.settings import Settings
from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import free_port, gateway, pod, pool, start_app, start_router, write_manifests

MODEL = "Qwen2.5-0.5B-Instruct"
LABELS = {"app": "demo"}
ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: demo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: demo}]
"""
OBJECTIVES = """apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch, namespace: default}
spec: {priority: -1, poolRef: {name: demo}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: chat, namespace: default}
spec: {priority: 5, poolRef: {name: demo}}
"""


async def start(tmp_path, pod_port, ips, **settings):
    port = free_port()
    write_manifests(tmp_path, "config.yaml", gateway("gw", port), pool("demo", pod_port, LABELS), ROUTE,
                    OBJECTIVES, *(pod(f"demo-{i}", ip, LABELS) for i, ip in enumerate(ips)))
    router = await start_router(tmp_path, port=port, **settings)
    states = router.app.endpoint_states
    await router.wait_for(lambda app: len(states.by_key) == len(ips)
                          and all(s.metered for s in states.by_key.values()))
    return router


async def complete(session: aiohttp.ClientSession, url: str, prompt: str, headers: dict | None = None):
    async with session.post(url + "/v1/completions", headers=headers,
                            json={"model": MODEL, "prompt": prompt, "max_tokens": 2}) as response:
        body = await response.json()
        return response.status, response.headers.get("X-Served-By"), body


@pytest.fixture
async def busy_and_idle(pod_port):
    busy = await start_simulator(SimConfig(model=MODEL, fake_waiting=40), POD_IPS[0], pod_port)
    idle = await start_simulator(SimConfig(model=MODEL, itl_ms=2), POD_IPS[1], pod_port)
    yield busy, idle
    await busy.close()
    await idle.close()


@pytest.fixture
async def two_idle(pod_port):
    sims = [await start_simulator(SimConfig(model=MODEL, itl_ms=1), ip, pod_port) for ip in POD_IPS[:2]]
    yield sims
    for sim in sims:
        await sim.close()


async def test_nearly_all_traffic_avoids_the_endpoint_reporting_a_long_queue(tmp_path, pod_port, busy_and_idle):
    router = await start(tmp_path, pod_port, POD_IPS[:2])
    try:
        async with aiohttp.ClientSession() as session:
            async def worker(w: int) -> list[str | None]:
                return [(await complete(session, router.url, f"request {w}-{n}: tell me a story"))[1]
                        for n in range(8)]

            served = Counter(s for batch in await asyncio.gather(*(worker(w) for w in range(6))) for s in batch)
        idle = f"{POD_IPS[1]}:{pod_port}"
        assert served[idle] >= 46, served
    finally:
        await router.app.shutdown()


async def test_a_shared_long_prefix_sticks_to_one_endpoint_and_distinct_prompts_spread(
        tmp_path, pod_port, two_idle):
    router = await start(tmp_path, pod_port, POD_IPS[:2])
    shared = "You are a meticulous assistant for a travel agency. Answer briefly and politely. " * 10
    try:
        async with aiohttp.ClientSession() as session:
            sticky = {(await complete(session, router.url, shared + f"Question {n}?"))[1] for n in range(12)}
            assert len(sticky) == 1
            spread = Counter([(await complete(session, router.url, f"{n} distinct topic " * 40))[1]
                              for n in range(30)])
        assert len(spread) == 2 and min(spread.values()) >= 5, spread
    finally:
        await router.app.shutdown()


async def test_saturated_pool_sheds_negative_priority_and_queues_the_rest_until_timeout(tmp_path, pod_port):
    sims = [await start_simulator(SimConfig(model=MODEL, fake_waiting=20), ip, pod_port) for ip in POD_IPS[:2]]
    router = await start(tmp_path, pod_port, POD_IPS[:2], queue_timeout=0.3)
    try:
        async with aiohttp.ClientSession() as session:
            status, _, body = await complete(session, router.url, "hi",
                                             {"x-gateway-inference-objective": "batch"})
            assert status == 429 and body["error"]["code"] == "overloaded"
            status, _, body = await complete(session, router.url, "hi",
                                             {"x-gateway-inference-objective": "chat"})
            assert status == 503 and body["error"]["code"] == "queue_timeout"
            async with session.get(router.metrics_url) as response:
                metrics = await response.text()
        assert 'kthena_router_scheduler_shed_total{inference_pool="default/demo",reason="saturated"} 1.0' in metrics
        assert 'reason="queue_timeout"} 1.0' in metrics
        assert "kthena_router_fairness_queue_duration_seconds_count" in metrics
    finally:
        await router.app.shutdown()
        for sim in sims:
            await sim.close()


async def test_a_queued_request_is_served_once_the_pool_has_room(tmp_path, pod_port):
    """The busy server's queue drains while a request waits: the router releases it then."""
    waiting = {"n": 20}
    seen_headers: list[dict] = []

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=f"vllm:num_requests_waiting {waiting['n']}\nvllm:kv_cache_usage_perc 0.1\n")

    async def completions(request: web.Request) -> web.Response:
        seen_headers.append(dict(request.headers))
        return web.json_response({"choices": [{"text": "ok"}], "usage": {"prompt_tokens": 1,
                                                                          "completion_tokens": 1}})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/completions", completions)
    runner = await start_app(app, POD_IPS[0], pod_port)
    router = await start(tmp_path, pod_port, POD_IPS[:1], queue_timeout=10.0)
    try:
        async with aiohttp.ClientSession() as session:
            pending = asyncio.create_task(complete(session, router.url, "hi",
                                                   {"x-gateway-inference-objective": "chat"}))
            await router.wait_for(lambda app: app.admission.queued(next(iter(app.state.snapshot.pools))) == 1)
            assert not pending.done()
            waiting["n"] = 0
            status, _, _ = await asyncio.wait_for(pending, 5)
        assert status == 200
        assert all("x-gateway-inference-objective" not in {k.lower() for k in h} for h in seen_headers)
    finally:
        await router.app.shutdown()
        await runner.cleanup()


async def test_filters_that_leave_no_endpoint_give_429(tmp_path, pod_port):
    sims = [await start_simulator(SimConfig(model=MODEL, fake_waiting=20), ip, pod_port) for ip in POD_IPS[:2]]
    config = tmp_path / "sched.yaml"
    config.write_text(textwrap.dedent("""\
        scheduler:
          pluginConfig: [{name: least-request, args: {maxWaitingRequests: 10}}]
          plugins:
            Filter: {enabled: [least-request]}
            Score: {enabled: [{name: least-request, weight: 1}]}
        """))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    router = await start(manifests, pod_port, POD_IPS[:2], scheduler_config=str(config),
                         saturation_queue_threshold=100)
    try:
        async with aiohttp.ClientSession() as session:
            status, _, body = await complete(session, router.url, "hi")
        assert status == 429 and body["error"]["code"] == "overloaded"
    finally:
        await router.app.shutdown()
        for sim in sims:
            await sim.close()


def test_a_bad_scheduler_config_stops_the_router_before_it_starts(tmp_path):
    config = tmp_path / "sched.yaml"
    config.write_text("scheduler:\n  plugins:\n    Score:\n      enabled: [{name: no-such-plugin}]\n")
    with pytest.raises(ConfigError, match="unknown plugin 'no-such-plugin'"):
        RouterApp(Settings(scheduler_config=str(config)))


async def test_a_client_leaving_while_queued_frees_its_place(tmp_path, pod_port):
    sims = [await start_simulator(SimConfig(model=MODEL, fake_waiting=20), ip, pod_port) for ip in POD_IPS[:1]]
    router = await start(tmp_path, pod_port, POD_IPS[:1], queue_timeout=30.0)
    ref = next(iter(router.app.state.snapshot.pools))
    try:
        async with aiohttp.ClientSession() as session:
            leaving = asyncio.create_task(complete(session, router.url, "hi"))
            await router.wait_for(lambda app: app.admission.queued(ref) == 1)
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
        await router.wait_for(lambda app: app.admission.queued(ref) == 0)
    finally:
        await router.app.shutdown()
        for sim in sims:
            await sim.close()


async def test_streamed_responses_feed_the_router_measured_latency(tmp_path, pod_port, two_idle):
    config = tmp_path / "sched.yaml"
    config.write_text("scheduler:\n  plugins: {Score: {enabled: [least-latency]}}\n")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    router = await start(manifests, pod_port, POD_IPS[:2], scheduler_config=str(config))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions",
                                    json={"model": MODEL, "prompt": "hi", "max_tokens": 4, "stream": True}) as r:
                assert r.status == 200
                await r.read()
        plugin = router.app.scheduler.default.scorers[0].plugin
        assert len(plugin.measured) == 1
        ttft, tpot = next(iter(plugin.measured.values()))
        assert ttft > 0 and tpot > 0
    finally:
        await router.app.shutdown()


TWO_POOL_ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: demo, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /rr}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: rr}]
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: demo}]
"""
ROUND_ROBIN_POOL = """apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: rr
  namespace: default
  annotations:
    kthena.io/scheduler-config: |
      scheduler:
        plugins: {Score: {enabled: [round-robin]}}
spec:
  selector: {matchLabels: {app: demo}}
  targetPorts: [{number: %d}]
"""


async def test_a_pool_annotated_with_round_robin_alternates_while_its_neighbour_avoids_the_queue(
        tmp_path, pod_port, busy_and_idle):
    port = free_port()
    write_manifests(tmp_path, "config.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    ROUND_ROBIN_POOL % pod_port, TWO_POOL_ROUTE,
                    *(pod(f"demo-{i}", ip, LABELS) for i, ip in enumerate(POD_IPS[:2])))
    router = await start_router(tmp_path, port=port)
    try:
        states = router.app.endpoint_states
        await router.wait_for(lambda app: len(states.by_key) == 2 and all(s.metered for s in states.by_key.values()))
        async with aiohttp.ClientSession() as session:
            plain = Counter([(await complete(session, router.url, f"plain {n}"))[1] for n in range(20)])
            turns = Counter([(await complete(session, router.url + "/rr", f"rr {n}"))[1] for n in range(20)])
        busy, idle = (f"{ip}:{pod_port}" for ip in POD_IPS[:2])
        assert plain[idle] >= 19, plain
        assert turns == {busy: 10, idle: 10}, turns
        status = router.app.state.statuses["inferencepools"]["default/rr"]["parents"][0]["conditions"][-1]
        assert (status["type"], status["status"], status["reason"]) == ("kthena.io/SchedulerConfig", "True", "Applied")
        assert router.app.scheduler.describe()["pools"]["default/rr"]["scorers"] == {"round-robin": 1.0}
    finally:
        await router.app.shutdown()

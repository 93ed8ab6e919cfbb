"""The router end to end: real simulators and odd upstreams on loopback, the official openai client,
raw aiohttp requests, raw sockets and curl."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import (
    free_port,
    gateway,
    pod,
    pool,
    start_app,
    start_router,
    write_manifests,
)

MODEL = "Qwen2.5-0.5B-Instruct"
LABELS = {"app": "demo"}


def _route(name: str, *, rules: str, gateway_name: str = "gw") -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {gateway_name}}}]
  rules:
{rules}"""


POOL_RULE = """  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: demo}]
    timeouts: {request: 300s}
"""


@pytest.fixture
async def sims(pod_port):
    servers = [await start_simulator(SimConfig(model=MODEL, itl_ms=1), ip, pod_port) for ip in POD_IPS]
    yield servers
    for server in servers:
        await server.close()


@pytest.fixture
async def router(tmp_path, sims, pod_port):
    port = free_port()
    write_manifests(tmp_path, "config.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE),
                    *(pod(f"demo-{i}", ip, LABELS) for i, ip in enumerate(POD_IPS)))
    running = await start_router(tmp_path, port=port)
    yield running
    await running.app.shutdown()


@pytest.fixture
def client(router):
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="sk-test", max_retries=0)


async def test_openai_client_completions_and_chat_non_streaming(router, client):
    completion = await client.completions.create(model=MODEL, prompt="hello there", max_tokens=5)
    assert completion.model == MODEL
    assert completion.usage.completion_tokens == 5
    chat = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4)
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens == 4


async def test_openai_client_streaming_hides_the_usage_chunk_it_did_not_ask_for(router, client):
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=6, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text


async def test_openai_client_streaming_keeps_the_usage_chunk_it_asked_for(router, client):
    stream = await client.completions.create(model=MODEL, prompt="a b c", max_tokens=3, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_concurrent_requests_are_spread_across_the_pools_endpoints(router):
    """In-flight counts change on dispatch, so requests that overlap land on different endpoints."""
    async def one(session: aiohttp.ClientSession) -> str:
        async with session.post(router.url + "/v1/completions",
                                json={"model": MODEL, "prompt": "x", "max_tokens": 30}) as resp:
            assert resp.status == 200
            return resp.headers["X-Served-By"]

    async with aiohttp.ClientSession() as session:
        served = await asyncio.gather(*(one(session) for _ in range(9)))
    assert len(set(served)) == 3


async def test_token_usage_is_counted_in_metrics_with_the_requested_model(router, client):
    await client.completions.create(model=MODEL, prompt="one two three", max_tokens=4)
    stream = await client.completions.create(model=MODEL, prompt="one", max_tokens=2, stream=True)
    [_ async for _ in stream]
    async with aiohttp.ClientSession() as session, session.get(router.metrics_url) as resp:
        text = await resp.text()
    assert 'kthena_router_requests_total{' in text
    lines = [line for line in text.splitlines() if line.startswith("kthena_router_tokens_total{")
             and f'model="{MODEL}"' in line and 'token_type="output"' in line]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) == 6.0
    assert 'model="unknown"' not in "\n".join(x for x in text.splitlines() if "requests_total{" in x)


async def test_metrics_pass_promtool(router, client):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    await client.completions.create(model=MODEL, prompt="x", max_tokens=1)
    async with aiohttp.ClientSession() as session, session.get(router.metrics_url) as resp:
        body = await resp.read()
    proc = await asyncio.create_subprocess_exec(promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(body)
    assert proc.returncode == 0, (out + err).decode()


async def test_health_readiness_and_debug_dump(router):
    async with aiohttp.ClientSession() as session:
        async with session.get(router.url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"message": "ok"}
        async with session.get(router.url + "/readyz") as resp:
            assert resp.status == 200
        async with session.get(router.debug_url) as resp:
            dump = await resp.json()
    gw = dump["statuses"]["gateways"]["default/gw"]
    assert {c["type"]: c["status"] for c in gw["conditions"]}["Programmed"] == "True"
    route = dump["statuses"]["httproutes"]["default/demo"]["parents"][0]
    assert {c["type"]: c["reason"] for c in route["conditions"]} == {"Accepted": "Accepted",
                                                                     "ResolvedRefs": "ResolvedRefs"}
    assert len(dump["snapshot"]["pools"]["default/demo"]["endpoints"]) == 3


async def test_the_debug_port_listens_on_loopback_only(router):
    with socket.socket() as s:
        s.settimeout(1)
        # Any non-loopback address of this host must not reach it; 127.0.0.1 must.
        s.connect(("127.0.0.1", router.settings.debug_port))
    sockets = [site for runner in router.app._side_runners for site in runner.sites]
    hosts = {site.name for site in sockets}
    assert any(f"127.0.0.1:{router.settings.debug_port}" in h for h in hosts)


@pytest.mark.parametrize("body, status, code", [
    (b"{bad json", 400, "request_parsing"),
    (b'{"prompt": "x"}', 400, "request_parsing"),
    (b'{"model": 42, "prompt": "x"}', 400, "request_parsing"),
])
async def test_bad_requests_get_openai_error_objects(router, body, status, code):
    async with aiohttp.ClientSession() as session, session.post(
            router.url + "/v1/completions", data=body, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
        assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


async def test_upstream_4xx_is_passed_through_untouched(router):
    async with aiohttp.ClientSession() as session, session.post(
            router.url + "/v1/completions", json={"model": "no-such-model", "prompt": "x"}) as resp:
        assert resp.status == 404
        assert "X-Served-By" in resp.headers  # the model server's own answer, not the router's
        assert "error" in await resp.json()


async def test_bodyless_get_models_is_routed_to_an_endpoint(router):
    async with aiohttp.ClientSession() as session, session.get(router.url + "/v1/models") as resp:
        assert resp.status == 200
        assert (await resp.json())["data"][0]["id"] == MODEL


async def test_curl_gets_the_guides_answer_streaming_and_not(router):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = orjson.dumps({"model": MODEL, "prompt": "San Francisco is a", "max_tokens": 7, "temperature": 0})
    proc = await asyncio.create_subprocess_exec(
        curl, "-s", "-w", "\n%{http_code}", router.url + "/v1/completions", "-H", "Content-Type: application/json",
        "-d", body.decode(), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text, status = out.decode().rsplit("\n", 1)
    assert status == "200" and orjson.loads(text)["usage"]["completion_tokens"] == 7
    stream_body = orjson.dumps({"model": MODEL, "prompt": "x", "max_tokens": 3, "stream": True})
    proc = await asyncio.create_subprocess_exec(
        curl, "-sN", router.url + "/v1/completions", "-H", "Content-Type: application/json",
        "-d", stream_body.decode(), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    events = [line for line in out.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) == 4


async def test_sse_is_relayed_chunk_by_chunk(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, itl_ms=150), POD_IPS[0], pod_port)
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE), pod("p0", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    try:
        async with aiohttp.ClientSession() as session, session.post(
                router.url + "/v1/completions",
                json={"model": MODEL, "prompt": "x", "max_tokens": 5, "stream": True}) as resp:
            arrivals = []
            async for chunk in resp.content.iter_any():
                arrivals.append((time.monotonic(), chunk))
        data_events = b"".join(c for _, c in arrivals).count(b"data: ")
        assert data_events == 6  # 5 tokens + [DONE]
        # The first token is seen long before the last: nothing buffers the whole stream.
        first = next(t for t, c in arrivals if b'"text"' in c)
        assert arrivals[-1][0] - first >= 0.4
    finally:
        await router.app.shutdown()
        await sim.close()


async def test_sse_on_a_reused_connection_has_no_nagle_stall(router):
    """TCP_NODELAY on both sides: without it, every small SSE write on a kept-alive connection waits for
    the peer's delayed ACK (about 40 ms)."""
    request = orjson.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2, "stream": True})
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(request)}\r\n\r\n").encode() + request
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    durations = []
    try:
        for _ in range(15):
            start = time.perf_counter()
            writer.write(head)
            buffer = b""
            while not buffer.endswith(b"0\r\n\r\n"):
                buffer += await reader.read(65536)
            durations.append(time.perf_counter() - start)
            assert b"data: [DONE]" in buffer
    finally:
        writer.close()
    # Every accepted and every upstream socket has Nagle off.
    for server in router.app._listeners._servers.values():
        for conn in server.http.connections:
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    durations.sort()
    assert durations[len(durations) // 2] < 0.035, durations


async def test_per_model_pools_selected_by_the_model_header(tmp_path, pod_port):
    sims = [await start_simulator(SimConfig(model="alpha"), POD_IPS[0], pod_port),
            await start_simulator(SimConfig(model="beta"), POD_IPS[1], pod_port)]
    port = free_port()
    rules = """  - matches: [{headers: [{name: X-Gateway-Model-Name, value: alpha}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: alpha}]
  - matches: [{headers: [{name: X-Gateway-Model-Name, value: beta}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: beta}]
"""
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("alpha", pod_port, {"model": "alpha"}),
                    pool("beta", pod_port, {"model": "beta"}), _route("models", rules=rules),
                    pod("a", POD_IPS[0], {"model": "alpha"}), pod("b", POD_IPS[1], {"model": "beta"}))
    router = await start_router(tmp_path, port=port)
    try:
        async with aiohttp.ClientSession() as session:
            for model, ip in (("alpha", POD_IPS[0]), ("beta", POD_IPS[1])):
                async with session.post(router.url + "/v1/completions", json={"model": model, "prompt": "x"}) as r:
                    assert r.status == 200
                    assert r.headers["X-Served-By"] == f"{ip}:{pod_port}"
            async with session.post(router.url + "/v1/completions", json={"model": "gamma", "prompt": "x"}) as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "route_not_found"
    finally:
        await router.app.shutdown()
        for sim in sims:
            await sim.close()


async def test_router_errors_have_the_documented_statuses(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, ttft_ms=2000), POD_IPS[0], pod_port)
    dead_port = free_port(POD_IPS[2])
    port = free_port()
    rules = """  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: empty}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: missing}]
  - matches: [{path: {type: PathPrefix, value: /dead}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: dead}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: slow}]
    timeouts: {request: 300ms}
"""
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("empty", pod_port, {"none": "x"}),
                    pool("dead", dead_port, {"role": "dead"}), pool("slow", pod_port, {"role": "slow"}),
                    _route("errs", rules=rules), pod("d", POD_IPS[2], {"role": "dead"}),
                    pod("s", POD_IPS[0], {"role": "slow"}))
    router = await start_router(tmp_path, port=port, max_body_bytes=1000)
    body = {"model": MODEL, "prompt": "x"}
    try:
        async with aiohttp.ClientSession() as session:
            for path, status, code in (("/empty/v1/completions", 503, "no_endpoints"),
                                       ("/missing/v1/completions", 500, "invalid_backend"),
                                       ("/dead/v1/completions", 502, "upstream_error"),
                                       ("/slow/v1/completions", 504, "request_timeout"),
                                       ("/nowhere", 404, "route_not_found")):
                async with session.post(router.url + path, json=body) as resp:
                    assert resp.status == status, path
                    error = (await resp.json())["error"]
                    assert error["code"] == code, path
            async with session.post(router.url + "/empty/v1/completions",
                                    json={"model": MODEL, "prompt": "x" * 2000}) as resp:
                assert resp.status == 413
                assert (await resp.json())["error"]["code"] == "request_too_large"
        # The timed-out request released its endpoint.
        assert router.app.state.inflight.total() == 0
    finally:
        await router.app.shutdown()
        await sim.close()


async def test_a_refused_connection_is_retried_on_another_endpoint(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL), POD_IPS[0], pod_port)
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE), pod("live", POD_IPS[0], LABELS),
                    pod("dead", POD_IPS[1], LABELS))
    router = await start_router(tmp_path, port=port)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                async with session.post(router.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}) as r:
                    assert r.status == 200
                    assert r.headers["X-Served-By"] == f"{POD_IPS[0]}:{pod_port}"
    finally:
        await router.app.shutdown()
        await sim.close()


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"headers": list(request.headers.items()), "path": request.path_qs,
                              "body": body.decode(), "served_by": request.host})


async def test_headers_forwarded_and_filtered(tmp_path, pod_port):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = await start_app(app, POD_IPS[0], pod_port)
    port = free_port()
    rules = """  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set-value}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Route, value: demo}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: demo}]
"""
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=rules), pod("echo", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    raw = orjson.dumps({"model": "m", "prompt": "keep  these   bytes", "extra": {"a": [1, 2]}})
    try:
        async with aiohttp.ClientSession() as session, session.post(
                router.url + "/v1/completions?x=1", data=raw,
                headers={"Content-Type": "application/json", "Connection": "keep-alive, X-Hop",
                         "X-Hop": "1", "Keep-Alive": "timeout=5", "Proxy-Authorization": "secret",
                         "X-Add": "original", "X-Remove": "gone", "X-Set": "old",
                         "X-Forwarded-For": "10.9.9.9", "Authorization": "Bearer sk"}) as resp:
            assert resp.status == 200
            assert resp.headers["X-Route"] == "demo"
            assert resp.headers["X-Request-Id"]
            echoed = await resp.json()
    finally:
        await router.app.shutdown()
        await runner.cleanup()
    headers = {}
    for name, value in echoed["headers"]:
        headers.setdefault(name.lower(), value)
    assert echoed["body"] == raw.decode()  # byte-for-byte: nothing re-encoded
    assert echoed["path"] == "/v1/completions?x=1"
    for hop in ("x-hop", "keep-alive", "proxy-authorization", "x-remove"):
        assert hop not in headers, hop
    assert headers["x-set"] == "set-value"
    assert headers["x-add"] == "original,added"
    assert headers["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert headers["x-gateway-model-name"] == "m"
    assert headers["authorization"] == "Bearer sk"
    assert len(headers["x-request-id"]) == 32


async def test_a_failure_mid_stream_ends_the_stream_with_an_error_event(tmp_path, pod_port):
    async def dying(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"index": 0, "text": "a"}]}\n\n')
        await asyncio.sleep(0.05)
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_post("/v1/completions", dying)
    runner = await start_app(app, POD_IPS[0], pod_port)
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE), pod("p", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    try:
        stream = await client.completions.create(model=MODEL, prompt="x", stream=True)
        with pytest.raises(openai.APIError) as err:
            async for _ in stream:
                pass
        assert "mid-response" in str(err.value)
        assert router.app.state.inflight.total() == 0
    finally:
        await router.app.shutdown()
        await runner.cleanup()


async def test_client_disconnect_cancels_the_upstream_request(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, itl_ms=100), POD_IPS[0], pod_port)
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE), pod("p", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(router.url + "/v1/completions",
                                      json={"model": MODEL, "prompt": "x", "max_tokens": 1000, "stream": True})
            await resp.content.readany()
            assert router.app.state.inflight.total() == 1
            resp.close()
        await router.wait_for(lambda app: app.state.inflight.total() == 0 and app.state.active_requests == 0)
        async with aiohttp.ClientSession() as session:
            async def running() -> float:
                async with session.get(sim.url + "/metrics") as r:
                    for line in (await r.text()).splitlines():
                        if line.startswith("vllm:num_requests_running"):
                            return float(line.rsplit(" ", 1)[1])
                return -1.0

            async with asyncio.timeout(3):
                while await running() != 0.0:
                    await asyncio.sleep(0.05)
    finally:
        await router.app.shutdown()
        await sim.close()


async def test_config_changes_reach_the_router_and_listeners_follow_gateways(tmp_path, sims, pod_port):
    port = free_port()
    path = write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                           _route("demo", rules=POOL_RULE), pod("p0", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    extra_port = free_port()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}) as r:
                assert r.status == 200
            # A second Gateway on a new port: a socket opens, the route attaches to it.
            write_manifests(tmp_path, "second.yaml", gateway("gw2", extra_port),
                            _route("demo2", rules=POOL_RULE, gateway_name="gw2"))
            await router.wait_for(lambda app: extra_port in app.state.snapshot.ports)
            async with session.post(f"http://127.0.0.1:{extra_port}/v1/completions",
                                    json={"model": MODEL, "prompt": "x"}) as r:
                assert r.status == 200
            # Removing it closes the socket again.
            (tmp_path / "second.yaml").unlink()
            await router.wait_for(lambda app: extra_port not in app._listeners.ports)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.post(f"http://127.0.0.1:{extra_port}/v1/completions", json={}):
                    pass
            # Pods added to the file become endpoints.
            path.write_text(path.read_text() + "---\n" + pod("p1", POD_IPS[1], LABELS))
            await router.wait_for(
                lambda app: len(app.state.snapshot.pools[next(iter(app.state.snapshot.pools))].endpoints) == 2)
    finally:
        await router.app.shutdown()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(router):
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits up to a second for the go-ahead."""
    body = orjson.dumps({"model": MODEL, "prompt": "word " * 400, "max_tokens": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    try:
        writer.write((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_conformance_test_mode_picks_the_endpoint_named_in_the_header(tmp_path, sims, pod_port):
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                    _route("demo", rules=POOL_RULE),
                    *(pod(f"demo-{i}", ip, LABELS) for i, ip in enumerate(POD_IPS)))
    router = await start_router(tmp_path, port=port, conformance_test_mode=True)
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.post(router.url + "/v1/completions", json=body,
                                        headers={"test-epp-endpoint-selection": POD_IPS[1]}) as resp:
                    assert resp.status == 200
                    assert resp.headers["x-conformance-test-served-endpoint"] == f"{POD_IPS[1]}:{pod_port}"
                    assert resp.headers["X-Served-By"] == f"{POD_IPS[1]}:{pod_port}"
            async with session.post(router.url + "/v1/completions", json=body,
                                    headers={"test-epp-endpoint-selection": "10.1.2.3"}) as resp:
                assert resp.status == 503
    finally:
        await router.app.shutdown()


async def test_metrics_forget_endpoints_that_leave_the_pool(tmp_path, sims, pod_port):
    port = free_port()
    path = write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                           _route("demo", rules=POOL_RULE), pod("p0", POD_IPS[0], LABELS))
    router = await start_router(tmp_path, port=port)
    gone = f"{POD_IPS[0]}:{pod_port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}) as r:
                assert r.status == 200
            async with session.get(router.metrics_url) as r:
                assert f'model_server="{gone}"' in await r.text()
            write_manifests(tmp_path, "c.yaml", gateway("gw", port), pool("demo", pod_port, LABELS),
                            _route("demo", rules=POOL_RULE), pod("p1", POD_IPS[1], LABELS))
            assert path.exists()
            await router.wait_for(lambda app: all(
                e.key.ip == POD_IPS[1] for p in app.state.snapshot.pools.values() for e in p.endpoints))
            async with session.get(router.metrics_url) as r:
                assert f'model_server="{gone}"' not in await r.text()
    finally:
        await router.app.shutdown()

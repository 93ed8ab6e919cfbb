"""The simulator's HTTP surface through an in-process test client: routes, errors, headers, streaming
without buffering, and queue bookkeeping when clients disconnect."""

import asyncio
import re

import aiohttp
import orjson
import pytest

from kthena_router.sim.config import SimConfig
from kthena_router.sim.server import build_app

SERVED_BY = "10.0.0.7:8000"
LONG_MS = 60_000.0
GAUGE = re.compile(
    r"^(vllm:num_requests_(?:running|waiting)|vllm:lora_requests_info)\{([^}]*)\} (\S+)$", re.M
)


@pytest.fixture
def make_client(aiohttp_client):
    async def make(**kwargs):
        return await aiohttp_client(build_app(SimConfig(model="base", loras=("ad1",), **kwargs), SERVED_BY))

    return make


async def gauges(client) -> dict[str, str]:
    resp = await client.get("/metrics")
    text = await resp.text()
    out = {}
    for name, labels, value in GAUGE.findall(text):
        out[name] = labels if name == "vllm:lora_requests_info" else value
    return out


async def wait_for_gauges(client, running: int, waiting: int) -> dict[str, str]:
    """Poll /metrics until the queue gauges read as expected (the server runs in this loop)."""
    want = {"vllm:num_requests_running": str(running), "vllm:num_requests_waiting": str(waiting)}
    async with asyncio.timeout(5):
        while True:
            got = await gauges(client)
            if all(got.get(k) == v for k, v in want.items()):
                return got
            await asyncio.sleep(0.005)


async def test_completion_returns_openai_body_and_served_by(make_client):
    client = await make_client()
    resp = await client.post(
        "/v1/completions", json={"model": "base", "prompt": "one two three", "max_tokens": 4}
    )
    assert resp.status == 200
    assert resp.headers["X-Served-By"] == SERVED_BY
    body = await resp.json()
    assert body["choices"][0]["text"] == " tok0 tok1 tok2 tok3"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_chat_to_a_lora_adapter_echoes_the_adapter_name(make_client):
    client = await make_client(default_output_tokens=2)
    resp = await client.post(
        "/v1/chat/completions", json={"model": "ad1", "messages": [{"role": "user", "content": "hi"}]}
    )
    body = await resp.json()
    assert body["model"] == "ad1"
    assert body["choices"][0]["message"]["content"] == " tok0 tok1"
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_stream_is_event_stream_with_done_and_served_by(make_client):
    client = await make_client()
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "base",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["X-Served-By"] == SERVED_BY
    raw = await resp.read()
    payloads = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
    assert len(payloads) == 1 + 3 + 1 + 1  # role, tokens, usage, [DONE]
    assert payloads[-1] == b"[DONE]"
    assert orjson.loads(payloads[-2])["usage"]["completion_tokens"] == 3


async def test_stream_events_are_sent_as_soon_as_produced(make_client):
    # The second token is a minute away: the first event can only arrive if nothing is buffered.
    client = await make_client(itl_ms=LONG_MS)
    resp = await client.post(
        "/v1/completions", json={"model": "base", "prompt": "x", "max_tokens": 2, "stream": True}
    )
    async with asyncio.timeout(5):
        first = await resp.content.readuntil(b"\n\n")
    assert orjson.loads(first.removeprefix(b"data: "))["choices"][0]["text"] == " tok0"
    resp.close()
    await wait_for_gauges(client, running=0, waiting=0)


async def test_ttft_delays_the_first_token(make_client):
    client = await make_client(ttft_ms=50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await client.post("/v1/completions", json={"model": "base", "prompt": "x", "max_tokens": 1})
    await resp.read()
    assert loop.time() - start >= 0.05


async def test_models_lists_base_and_adapters(make_client):
    client = await make_client()
    resp = await client.get("/v1/models")
    body = await resp.json()
    assert [(m["id"], m["parent"]) for m in body["data"]] == [("base", None), ("ad1", "base")]
    assert resp.headers["X-Served-By"] == SERVED_BY


async def test_health_is_200_with_an_empty_body(make_client):
    client = await make_client()
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["X-Served-By"] == SERVED_BY


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "err_type"),
    [
        ("POST", "/v1/completions", {"model": "other", "prompt": "x"}, 404, "NotFoundError"),
        ("POST", "/v1/chat/completions", {"model": "base"}, 400, "BadRequestError"),
        ("POST", "/v1/completions", b"{broken", 400, "BadRequestError"),
        ("GET", "/v2/nowhere", None, 404, "NotFoundError"),
        ("GET", "/v1/completions", None, 405, "MethodNotAllowedError"),
    ],
)
async def test_errors_are_json_error_objects_with_served_by(
    make_client, method, path, body, status, err_type
):
    client = await make_client()
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    resp = await client.request(method, path, **kwargs)
    assert resp.status == status
    assert resp.headers["X-Served-By"] == SERVED_BY
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert (error["code"], error["type"]) == (status, err_type)
    assert error["message"]


async def test_metrics_show_one_running_two_waiting_and_disconnects_free_places(make_client):
    client = await make_client(max_num_seqs=1, ttft_ms=LONG_MS)

    def post(model: str) -> asyncio.Task:
        return asyncio.create_task(
            client.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 1})
        )

    running = post("base")
    await wait_for_gauges(client, running=1, waiting=0)
    queued = post("ad1")
    await wait_for_gauges(client, running=1, waiting=1)
    last = post("base")
    got = await wait_for_gauges(client, running=1, waiting=2)
    assert 'waiting_lora_adapters="ad1"' in got["vllm:lora_requests_info"]

    queued.cancel()  # the client goes away while queued: its place in the queue is given back
    got = await wait_for_gauges(client, running=1, waiting=1)
    assert 'waiting_lora_adapters=""' in got["vllm:lora_requests_info"]

    running.cancel()  # the running client goes away: its slot passes to the next in line
    await wait_for_gauges(client, running=1, waiting=0)
    assert not last.done()
    last.cancel()
    await wait_for_gauges(client, running=0, waiting=0)
    await asyncio.gather(running, queued, last, return_exceptions=True)


async def test_metrics_content_type_and_fake_values(make_client):
    client = await make_client(fake_waiting=12, fake_kv_usage=0.5)
    resp = await client.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert resp.headers["X-Served-By"] == SERVED_BY
    text = await resp.text()
    assert 'vllm:num_requests_waiting{model_name="base"} 12' in text
    assert 'vllm:kv_cache_usage_perc{model_name="base"} 0.5' in text


async def test_method_not_allowed_keeps_the_allow_header(make_client):
    client = await make_client()
    resp = await client.get("/v1/chat/completions")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]


async def test_a_failure_mid_stream_cuts_the_stream_and_frees_the_slot(make_client, monkeypatch):
    from kthena_router.sim.protocol import StreamEncoder

    original = StreamEncoder.token_event

    def failing(self, index):
        if index == 1:
            raise RuntimeError("encoder broke")
        return original(self, index)

    monkeypatch.setattr(StreamEncoder, "token_event", failing)
    client = await make_client()
    resp = await client.post(
        "/v1/completions", json={"model": "base", "prompt": "x", "max_tokens": 3, "stream": True}
    )
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    await wait_for_gauges(client, running=0, waiting=0)


async def test_get_load_reports_requests_in_the_engine_for_power_of_two_routers(make_client):
    client = await make_client(ttft_ms=LONG_MS, max_num_seqs=1)
    body = {"model": "base", "prompt": "x", "max_tokens": 1}
    tasks = [asyncio.create_task(client.post("/v1/completions", json=body)) for _ in range(3)]
    await wait_for_gauges(client, running=1, waiting=2)
    resp = await client.get("/get_load")
    assert resp.status == 200
    assert await resp.json() == {"load": 3, "num_reqs": 1, "num_waiting_reqs": 2}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_repeated_prompt_prefix_is_counted_as_prefix_cache_hits(make_client):
    client = await make_client(kv_blocks=64, block_size=4)
    system = "you are a helpful assistant who answers in exactly one short sentence " * 2
    for question in ("what is two plus two", "name a colour"):
        body = {"model": "base", "prompt": system + question, "max_tokens": 2}
        resp = await client.post("/v1/completions", json=body)
        assert resp.status == 200
    text = await (await client.get("/metrics")).text()
    hits = re.search(r'^vllm:prefix_cache_hits_total\{model_name="base"\} (\d+)$', text, re.M)
    assert hits is not None and int(hits.group(1)) == 24  # six shared blocks of four words

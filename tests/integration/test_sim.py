"""A real simulator on a socket, driven by the official openai client, raw HTTP and its command line."""

import asyncio
import errno
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from kthena_router.sim import SimConfig, SimServer, start_simulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sim():
    server = await start_simulator(SimConfig(model="base-model", loras=("adapter-a",)), "127.0.0.1", 0)
    yield server
    await server.close()


@pytest.fixture
async def client(sim: SimServer):
    async with openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0) as oa:
        yield oa


async def test_port_zero_picks_a_free_port_reported_in_url(sim: SimServer):
    assert sim.port > 0
    assert sim.url == f"http://127.0.0.1:{sim.port}"


async def test_openai_completion(client: openai.AsyncOpenAI):
    result = await client.completions.create(model="base-model", prompt="say three words", max_tokens=3)
    assert result.choices[0].text == " tok0 tok1 tok2"
    assert result.choices[0].finish_reason == "length"
    assert result.model == "base-model"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        3,
        3,
        6,
    )


async def test_openai_chat_completion_on_an_adapter(client: openai.AsyncOpenAI):
    result = await client.chat.completions.create(
        model="adapter-a", messages=[{"role": "user", "content": "hello there"}], max_completion_tokens=2
    )
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == " tok0 tok1"
    assert result.model == "adapter-a"
    assert result.usage is not None and result.usage.total_tokens == 4


async def test_openai_completion_stream_with_usage(client: openai.AsyncOpenAI):
    stream = await client.completions.create(
        model="base-model", prompt="a b", max_tokens=4, stream=True, stream_options={"include_usage": True}
    )
    texts, finishes, usages = [], [], []
    async for chunk in stream:
        if chunk.choices:
            texts.append(chunk.choices[0].text)
            finishes.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usages.append(chunk.usage)
    assert texts == [" tok0", " tok1", " tok2", " tok3"]
    assert finishes == [None, None, None, "length"]
    assert len(usages) == 1
    assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (2, 4)


async def test_openai_chat_stream_with_usage(client: openai.AsyncOpenAI):
    stream = await client.chat.completions.create(
        model="base-model",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "go on"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    roles, content, finish, usage = [], "", None, None
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.role:
                roles.append(delta.role)
            content += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert roles == ["assistant"]
    assert content == " tok0 tok1 tok2"
    assert finish == "length"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 3, 6)


async def test_openai_client_sees_unknown_model_as_not_found(client: openai.AsyncOpenAI):
    with pytest.raises(openai.NotFoundError) as caught:
        await client.completions.create(model="missing", prompt="x")
    assert "does not exist" in str(caught.value)


async def test_every_response_names_the_address_it_listens_on(sim: SimServer):
    expected = f"127.0.0.1:{sim.port}"
    async with aiohttp.ClientSession(sim.url) as session:
        for method, path, body in [
            ("POST", "/v1/completions", {"model": "base-model", "prompt": "x", "max_tokens": 1}),
            ("POST", "/v1/completions", {"model": "nope", "prompt": "x"}),
            ("GET", "/metrics", None),
            ("GET", "/health", None),
            ("GET", "/nowhere", None),
        ]:
            async with session.request(method, path, json=body) as resp:
                await resp.read()
                assert resp.headers["X-Served-By"] == expected, (method, path)


async def test_binds_other_loopback_addresses():
    try:
        server = await start_simulator(SimConfig(model="m"), "127.0.0.2", 0)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            pytest.skip("127.0.0.2 is not a local address here")
        raise
    try:
        async with aiohttp.ClientSession() as session, session.get(server.url + "/health") as resp:
            assert resp.status == 200
            assert resp.headers["X-Served-By"] == f"127.0.0.2:{server.port}"
    finally:
        await server.close()


async def test_command_line_serves_and_exits_cleanly_on_sigterm():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kthena_router.sim", "--port", "0", "--model", "cli-model", "--lora", "cli-a",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            line = (await proc.stderr.readline()).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = match.group(0)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url + "/v1/completions", json={"model": "cli-a", "prompt": "x", "max_tokens": 2}
            ) as resp:
                body = await resp.json()
            assert resp.status == 200
            assert body["choices"][0]["text"] == " tok0 tok1"
            assert resp.headers["X-Served-By"] == f"127.0.0.1:{match.group(1)}"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            rc = await proc.wait()
        assert rc == 0
        rest = (await proc.stderr.read()).decode()
        assert "Traceback" not in rest, rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_batching_simulator_reuses_a_shared_prefix_and_reports_lora_slots():
    config = SimConfig(
        model="base-model",
        loras=("adapter-a", "adapter-b"),
        kv_blocks=32,
        block_size=4,
        max_loras=1,
        ttft_ms=1,
        prefill_ms_per_token=0.5,
        itl_ms=1,
        itl_batch_factor=0.1,
    )
    server = await start_simulator(config, "127.0.0.1", 0)
    system = "one two three four five six seven eight "
    try:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oa:
            for model, question in (("adapter-a", "nine"), ("adapter-a", "ten eleven")):
                result = await oa.completions.create(model=model, prompt=system + question, max_tokens=2)
                assert result.choices[0].text == " tok0 tok1"
        async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as resp:
            text = await resp.text()
        assert re.search(r'^vllm:prefix_cache_hits_total\{model_name="base-model"\} 8$', text, re.M)
        assert re.search(r'^vllm:prefix_cache_queries_total\{model_name="base-model"\} 19$', text, re.M)
        assert 'vllm:lora_requests_info{max_lora="1",running_lora_adapters="",' in text
    finally:
        await server.close()

"""Endpoints that refuse, reset, hang, talk nonsense or fail: what clients see, and nothing left behind."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tests.faults.backends import (
    OK,
    SSE_END,
    SSE_HEAD,
    Backend,
    router_for,
    router_tasks,
    settled,
    sse_chunk,
)
from tests.faults.conftest import IPS

BODY = {"model": "m", "prompt": "hi", "max_tokens": 4}


async def post(router, body=BODY) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        async with session.post(router.url + "/v1/completions", json=body) as resp:
            return resp.status, await resp.read()


def error_code(body: bytes) -> str:
    return orjson.loads(body)["error"]["code"]


async def test_a_refusing_endpoint_is_skipped_and_with_none_left_the_client_gets_502(tmp_path, port):
    good = await Backend(IPS[1], port).start()
    router = await router_for(tmp_path, [Backend(IPS[0], port), good], outlier_consecutive_failures=0)
    try:
        for _ in range(6):
            status, _ = await post(router)
            assert status == 200
        assert good.requests == 6
        await good.stop()
        status, body = await post(router)
        assert status == 502 and error_code(body) == "upstream_error"
        await settled(router)
    finally:
        await router.app.shutdown()


async def test_resets_before_and_during_a_response(tmp_path, port):
    async def reset_before(reader, writer, request):
        writer.transport.abort()

    async def reset_during(reader, writer, request):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\"")
        await writer.drain()
        writer.transport.abort()

    async def reset_stream(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("a"))
        await writer.drain()
        writer.transport.abort()

    backend = await Backend(IPS[0], port, reset_before).start()
    router = await router_for(tmp_path, [backend])
    try:
        status, body = await post(router)
        assert status == 502 and error_code(body) == "upstream_error"
        backend.behaviour = reset_during
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions", json=BODY) as resp:
                assert resp.status == 200
                try:
                    await resp.read()
                    raise AssertionError("a cut body must not look complete")
                except aiohttp.ClientPayloadError:
                    pass
        backend.behaviour = reset_stream
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions", json={**BODY, "stream": True}) as resp:
                text = (await resp.read()).decode()
        assert text.startswith('data: {"choices"')
        last = text.strip().split("\n\n")[-1]
        assert orjson.loads(last.removeprefix("data: "))["error"]["code"] == "upstream_error"
        await settled(router)
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_silence_before_headers_is_a_504_and_mid_stream_an_error_event(tmp_path, port):
    async def hang(reader, writer, request):
        await asyncio.sleep(30)

    async def hang_mid_stream(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("a"))
        await writer.drain()
        await asyncio.sleep(30)

    backend = await Backend(IPS[0], port, hang).start()
    router = await router_for(tmp_path, [backend], upstream_read_timeout=0.3)
    try:
        status, body = await post(router)
        assert status == 504 and error_code(body) == "upstream_timeout"
        backend.behaviour = hang_mid_stream
        status, body = await post(router, {**BODY, "stream": True})
        events = body.decode().strip().split("\n\n")
        assert status == 200 and len(events) == 2
        assert orjson.loads(events[-1].removeprefix("data: "))["error"]["code"] == "upstream_timeout"
        await settled(router)
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_malformed_http_is_a_502_and_5xx_passes_through(tmp_path, port):
    async def nonsense(reader, writer, request):
        writer.write(b"HTTP/1.1 two hundred\r\n\r\n")

    async def overloaded(reader, writer, request):
        body = b'{"error":{"message":"busy"}}'
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    backend = await Backend(IPS[0], port, nonsense).start()
    router = await router_for(tmp_path, [backend], outlier_consecutive_failures=0)
    try:
        status, body = await post(router)
        assert status == 502 and error_code(body) == "upstream_error"
        backend.behaviour = overloaded
        status, body = await post(router)
        assert status == 503 and body == b'{"error":{"message":"busy"}}'
        await settled(router)
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_an_endpoint_that_keeps_failing_is_left_out_then_tried_again(tmp_path, port):
    async def fail(reader, writer, request):
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")

    bad = await Backend(IPS[0], port, fail).start()
    good = await Backend(IPS[1], port).start()
    router = await router_for(tmp_path, [bad, good], outlier_consecutive_failures=2, outlier_base_ejection=0.5)
    try:
        statuses = [(await post(router))[0] for _ in range(30)]
        assert bad.requests == 2 and statuses.count(500) == 2  # then it is left out
        metrics = await _metrics(router)
        assert f'kthena_router_endpoint_ejected{{endpoint="{IPS[0]}:{port}"}} 1.0' in metrics
        bad.behaviour = lambda reader, writer, request: _ok(writer)
        await asyncio.sleep(0.6)
        for _ in range(30):
            assert (await post(router))[0] == 200
        assert bad.requests > 2  # back in after the ejection time
    finally:
        await router.app.shutdown()
        await bad.stop()
        await good.stop()


async def _ok(writer):
    writer.write(OK)


async def _metrics(router) -> str:
    async with aiohttp.ClientSession() as session, session.get(router.metrics_url) as resp:
        return await resp.text()


async def test_a_streamed_response_relays_every_chunk_and_leaves_nothing_behind(tmp_path, port):
    async def stream(reader, writer, request):
        writer.write(SSE_HEAD)
        for i in range(20):
            writer.write(sse_chunk(str(i)))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(SSE_END)

    backend = await Backend(IPS[0], port, stream).start()
    router = await router_for(tmp_path, [backend])
    try:
        await post(router, {**BODY, "stream": True})
        await settled(router)
        before = router_tasks()
        for _ in range(5):
            status, body = await post(router, {**BODY, "stream": True})
            assert status == 200 and body.count(b"data: ") == 21 and body.endswith(b"data: [DONE]\n\n")
        stats = await settled(router)
        assert stats["upstream_connections"] <= 1
        assert router_tasks() <= before
    finally:
        await router.app.shutdown()
        await backend.stop()

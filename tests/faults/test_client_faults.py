"""Clients that leave early, and endpoints that leave the pool mid-stream."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.backends import ROUTE, SSE_END, SSE_HEAD, Backend, pod, router_for, settled, sse_chunk
from tests.faults.conftest import IPS
from tests.integration.harness import pool, write_manifests

REQUEST = b'{"model":"m","prompt":"hi","max_tokens":4,"stream":true}'


def raw_request(body: bytes = REQUEST, length: int | None = None) -> bytes:
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length)) + body


async def test_a_client_leaving_before_the_headers_cancels_the_upstream_request(tmp_path, port):
    async def hang(reader, writer, request):
        await reader.read()  # returns when the router closes its side

    backend = await Backend(IPS[0], port, hang).start()
    router = await router_for(tmp_path, [backend])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
        writer.write(raw_request())
        async with asyncio.timeout(3):
            while backend.requests == 0:
                await asyncio.sleep(0.01)
        backend.closed.clear()
        writer.close()
        async with asyncio.timeout(1):
            await backend.closed.wait()  # the router dropped the upstream connection promptly
        stats = await settled(router)
        assert stats["client_connections"] == 0
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_a_client_leaving_during_its_upload_never_reaches_an_endpoint(tmp_path, port):
    backend = await Backend(IPS[0], port).start()
    router = await router_for(tmp_path, [backend])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
        writer.write(raw_request(REQUEST[:10], length=len(REQUEST)))
        await asyncio.sleep(0.1)
        writer.close()
        stats = await settled(router)
        assert backend.requests == 0 and stats["client_connections"] == 0
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_a_client_leaving_mid_stream_stops_the_upstream_stream(tmp_path, port):
    sent = []

    async def slow_stream(reader, writer, request):
        writer.write(SSE_HEAD)
        for i in range(200):
            writer.write(sse_chunk(str(i)))
            await writer.drain()
            sent.append(i)
            await asyncio.sleep(0.02)
        writer.write(SSE_END)

    backend = await Backend(IPS[0], port, slow_stream).start()
    router = await router_for(tmp_path, [backend])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
        writer.write(raw_request())
        async with asyncio.timeout(3):
            await reader.readuntil(b"data: ")
        backend.closed.clear()
        writer.close()
        async with asyncio.timeout(2):
            await backend.closed.wait()
        assert len(sent) < 100
        await settled(router)
    finally:
        await router.app.shutdown()
        await backend.stop()


async def test_an_endpoint_removed_mid_stream_finishes_it_and_gets_no_new_requests(tmp_path, port):
    release = asyncio.Event()

    async def paused_stream(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("first"))
        await writer.drain()
        await release.wait()
        writer.write(sse_chunk("second") + SSE_END)

    leaving = await Backend(IPS[0], port, paused_stream).start()
    staying = await Backend(IPS[1], port).start()
    router = await router_for(tmp_path, [leaving], outlier_consecutive_failures=0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions",
                                    json={"model": "m", "prompt": "hi", "stream": True}) as resp:
                first = await resp.content.readuntil(b"\n\n")
                assert b"first" in first
                write_manifests(tmp_path, "c.yaml", pool("p", port, {"app": "be"}), ROUTE,
                                pod("be-1", IPS[1], {"app": "be"}))
                ref = next(iter(router.app.state.snapshot.pools))
                await router.wait_for(lambda app: [e.key.ip for e in app.state.snapshot.pools[ref].endpoints]
                                      == [IPS[1]])
                release.set()
                rest = await resp.read()
            assert b"second" in rest and rest.endswith(b"data: [DONE]\n\n")
            for _ in range(3):
                async with session.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"}) as r:
                    assert r.status == 200
        assert leaving.requests == 1 and staying.requests == 3
        await settled(router)
    finally:
        await router.app.shutdown()
        await leaving.stop()
        await staying.stop()

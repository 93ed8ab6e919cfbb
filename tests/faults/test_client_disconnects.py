"""Clients that leave early: before the response head, during their upload, during a stream, or while the
router is still connecting. The upstream request is dropped promptly and every counter returns to zero."""

from __future__ import annotations

import asyncio

from tests.faults.backends import SSE_END, SSE_HEAD, Backend, Unaccepting, hang, scene, sse_chunk
from tests.faults.conftest import IPS

REQUEST = b'{"model":"m","prompt":"hi","max_tokens":4,"stream":true}'


def raw_request(body: bytes = REQUEST, length: int | None = None) -> bytes:
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length)) + body


async def connect(s) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", s.router.settings.port)


async def until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_client_leaving_before_the_response_head_cancels_the_upstream_request(tmp_path, port):
    backend = Backend(IPS[0], port, hang)
    async with scene(tmp_path, [backend]) as s:
        _, writer = await connect(s)
        writer.write(raw_request())
        await until(lambda: backend.requests == 1)
        writer.close()
        async with asyncio.timeout(1):
            await backend.closed.wait()  # the router dropped the upstream connection


async def test_a_client_leaving_during_its_upload_never_reaches_an_endpoint(tmp_path, port):
    backend = Backend(IPS[0], port)
    async with scene(tmp_path, [backend]) as s:
        reader, writer = await connect(s)
        writer.write(raw_request(REQUEST[:10], length=len(REQUEST)))
        await until(lambda: s.router.app.state.active_requests == 1)
        writer.close()
        async with asyncio.timeout(1):
            await until(lambda: s.router.app.state.active_requests == 0)
        assert backend.requests == 0


async def test_a_client_leaving_mid_stream_stops_the_upstream_stream(tmp_path, port):
    sent: list[int] = []

    async def slow_stream(reader, writer, request):
        writer.write(SSE_HEAD)
        for i in range(200):
            writer.write(sse_chunk(str(i)))
            await writer.drain()
            sent.append(i)
            await asyncio.sleep(0.02)
        writer.write(SSE_END)

    backend = Backend(IPS[0], port, slow_stream)
    async with scene(tmp_path, [backend]) as s:
        reader, writer = await connect(s)
        writer.write(raw_request())
        await reader.readuntil(b"data: ")
        writer.close()
        async with asyncio.timeout(1):
            await backend.closed.wait()
        assert len(sent) < 100  # 4 s of stream were left when the client went


async def test_a_client_leaving_while_the_router_connects_cancels_the_connect(tmp_path, port):
    async with scene(tmp_path, [Unaccepting(IPS[0], port)], connect_timeout=30.0) as s:
        _, writer = await connect(s)
        writer.write(raw_request())
        await until(lambda: s.router.app.state.inflight.total() == 1)
        writer.close()
        async with asyncio.timeout(1):
            await until(lambda: s.router.app.state.inflight.total() == 0)

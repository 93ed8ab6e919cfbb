"""The upstream client against raw loopback servers that behave, and misbehave, on demand."""

from __future__ import annotations

import asyncio

import pytest

from kthena_router.http.client import (
    ConnectFailed,
    MalformedResponse,
    UpstreamClient,
    UpstreamClosed,
    UpstreamTimeout,
)
from tests.integration.harness import free_port

HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class Backend:
    """A server answering each request head with `reply(index, request_bytes)` (bytes, or None to stay quiet)."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests += 1
                action = self.reply(self.requests, head + body)
                if action is None:
                    await asyncio.sleep(3600)
                if callable(action):
                    await action(writer)
                else:
                    writer.write(action)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def backend():
    servers = []

    async def start(reply) -> tuple[Backend, int]:
        b = Backend(reply)
        server = await asyncio.start_server(b.handle, "127.0.0.1", 0)
        servers.append(server)
        return b, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def client():
    c = UpstreamClient(connect_timeout=1.0, read_timeout=0.3, keepalive_per_host=2)
    yield c
    await c.close()


async def read_all(response) -> bytes:
    body = b""
    while chunk := await response.read():
        body += chunk
    response.release()
    return body


async def settle(client: UpstreamClient, open_: int = 0) -> None:
    async with asyncio.timeout(2):
        while client.open_connections != open_:
            await asyncio.sleep(0.01)


async def test_sequential_requests_reuse_one_connection(backend, client):
    b, port = await backend(lambda i, req: OK)
    for _ in range(3):
        response = await client.send("127.0.0.1", port, HEAD, b"hi")
        assert response.status == 200 and response.header(b"content-type") == b"application/json"
        assert await read_all(response) == b'{"ok":true}'
    assert b.connections == 1 and client.idle_connections == 1


async def test_parallel_requests_open_separate_connections_and_the_pool_stays_bounded(backend, client):
    b, port = await backend(lambda i, req: OK)
    responses = await asyncio.gather(*(client.send("127.0.0.1", port, HEAD, b"hi") for _ in range(4)))
    for response in responses:
        await read_all(response)
    assert b.connections == 4
    await settle(client, 2)
    assert client.idle_connections == 2  # keepalive_per_host


async def test_chunked_and_until_close_bodies_are_read_whole(backend, client):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"

    async def close_after(writer):
        writer.write(until_close)
        await writer.drain()
        writer.close()

    _, port = await backend(lambda i, req: chunked if i == 1 else close_after)
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert response.chunked and await read_all(response) == b"abcdefg"
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert await read_all(response) == b"all of it"
    await settle(client, 0)  # the second request reused the connection, which the endpoint then closed


async def test_interim_responses_are_skipped_and_head_responses_have_no_body(backend, client):
    _, port = await backend(lambda i, req: b"HTTP/1.1 100 Continue\r\n\r\n" + OK if i == 1 else
                            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert response.status == 200 and await read_all(response) == b'{"ok":true}'
    response = await client.send("127.0.0.1", port, b"HEAD / HTTP/1.1\r\nHost: e\r\n\r\n", b"", head_only=True)
    assert response.content_length is None and await read_all(response) == b""


async def test_an_idle_connection_closed_by_the_endpoint_is_replaced(backend, client):
    b, port = await backend(lambda i, req: OK)
    await read_all(await client.send("127.0.0.1", port, HEAD, b"hi"))
    for writer in b.writers:
        writer.close()
    await asyncio.sleep(0.05)
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert await read_all(response) == b'{"ok":true}'
    assert b.connections == 2


async def test_refused_and_unreachable_endpoints_raise_connect_failed(client):
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await client.send("127.0.0.1", free_port(), HEAD, b"hi")
    assert client.open_connections == 0


async def test_resets_are_reported_with_whether_the_response_had_started(backend, client):
    async def reset_now(writer):
        writer.transport.abort()

    async def reset_mid_body(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    _, port = await backend(lambda i, req: reset_now if i == 1 else reset_mid_body)
    with pytest.raises(UpstreamClosed) as before:
        await client.send("127.0.0.1", port, HEAD, b"hi")
    assert not before.value.response_started
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert await response.read() == b"partial"
    with pytest.raises(UpstreamClosed) as during:
        await response.read()
    assert during.value.response_started
    response.abort()
    await settle(client)


async def test_silence_before_or_during_a_response_times_out(backend, client):
    async def stall_mid_body(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
        await writer.drain()
        await asyncio.sleep(3600)

    _, port = await backend(lambda i, req: None if i == 1 else stall_mid_body)
    with pytest.raises(UpstreamTimeout, match="no response within"):
        await client.send("127.0.0.1", port, HEAD, b"hi")
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    assert await response.read() == b"some"
    with pytest.raises(UpstreamTimeout, match="silent"):
        await response.read()
    response.abort()
    await settle(client)


async def test_malformed_responses_are_reported(backend, client):
    _, port = await backend(lambda i, req: b"HTTP/1.1 abc nonsense\r\n\r\n")
    with pytest.raises(MalformedResponse):
        await client.send("127.0.0.1", port, HEAD, b"hi")
    await settle(client)


async def test_a_slow_reader_pauses_the_endpoint_instead_of_buffering(backend, client):
    size = 4 * 1024 * 1024

    async def big(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()

    _, port = await backend(lambda i, req: big)
    response = await client.send("127.0.0.1", port, HEAD, b"hi")
    await asyncio.sleep(0.2)
    assert response._buffered < 1024 * 1024  # reading paused near the high-water mark
    assert len(await read_all(response)) == size


async def test_cancelling_a_request_closes_its_connection(backend, client):
    _, port = await backend(lambda i, req: None)
    task = asyncio.create_task(client.send("127.0.0.1", port, HEAD, b"hi"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(client)
    assert client.idle_connections == 0

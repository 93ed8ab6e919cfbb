import asyncio

import pytest
from aiohttp import web

from kthena_router.endpoints.http import ScrapeConnection, ScrapeError, parse_response


def test_content_length_framing_waits_for_the_whole_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert parse_response(bytearray(head + b"abc"), eof=False) is None
    assert parse_response(bytearray(head + b"abcde"), eof=False) == (200, b"abcde", True)


def test_chunked_bodies_are_joined():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    assert parse_response(bytearray(raw), eof=False) == (200, b"abcde", True)
    assert parse_response(bytearray(raw[:-4]), eof=False) is None


def test_close_framed_bodies_end_at_eof_and_http10_does_not_keep_alive():
    raw = bytearray(b"HTTP/1.0 200 OK\r\n\r\nbody")
    assert parse_response(raw, eof=False) is None
    assert parse_response(raw, eof=True) == (200, b"body", False)
    closing = bytearray(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert parse_response(closing, eof=False) == (404, b"", False)


def test_non_http_answers_and_truncated_bodies_are_errors():
    with pytest.raises(ScrapeError, match="not an HTTP"):
        parse_response(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"), eof=False)
    with pytest.raises(ScrapeError, match="Content-Length"):
        parse_response(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), eof=True)


@pytest.fixture
async def server():
    connections = set()  # client (address, port) pairs seen: one per connection

    @web.middleware
    async def note_peer(request, handler):
        connections.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    async def plain(request):
        return web.Response(text="vllm:num_requests_waiting 3\n")

    async def chunked(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"vllm:num_requests_", b"waiting 4\n"):
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application(middlewares=[note_peer])
    app.router.add_get("/metrics", plain)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, connections
    await runner.cleanup()


async def test_requests_reuse_one_connection(server):
    port, connections = server
    conn = ScrapeConnection("127.0.0.1", port, f"127.0.0.1:{port}", timeout=2)
    for _ in range(5):
        assert await conn.get("/metrics") == (200, b"vllm:num_requests_waiting 3\n")
    assert await conn.get("/chunked") == (200, b"vllm:num_requests_waiting 4\n")
    assert await conn.get("/missing") == (404, b"404: Not Found")
    assert len(connections) == 1
    conn.close()


async def test_a_slow_answer_times_out_and_the_next_request_reconnects(server):
    port, connections = server
    conn = ScrapeConnection("127.0.0.1", port, f"127.0.0.1:{port}", timeout=0.1)
    with pytest.raises(ScrapeError, match="no answer within"):
        await conn.get("/slow")
    assert (await conn.get("/metrics"))[0] == 200
    assert len(connections) == 2
    conn.close()


async def test_a_refused_connection_is_a_scrape_error():
    conn = ScrapeConnection("127.0.0.1", 1, "127.0.0.1:1", timeout=1)
    with pytest.raises(ScrapeError):
        await conn.get("/metrics")

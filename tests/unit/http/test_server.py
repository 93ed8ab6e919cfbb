"""The router's HTTP/1.1 server against raw sockets: framing, keep-alive, pipelining and the limits."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from kthena_router.http import HTTPRequest, HTTPServer, ServerLimits


async def echo(request: HTTPRequest) -> None:
    """Answers with what it saw: method, path, query, a header and the body."""
    body = await request.read_body()
    if request.path == "/stream":
        request.start(200, None, b"Content-Type: text/plain\r\n", None)
        for piece in (b"one ", b"two ", b"three"):
            await request.send(piece)
        request.finish()
        return
    if request.path == "/hang":
        await asyncio.sleep(3600)
    request.respond(200, orjson.dumps({
        "method": request.method, "path": request.path, "raw_path": request.raw_path,
        "query": request.query_string, "host": request.host, "x": request.headers.get("X-Test"),
        "body": body.decode(), "version": request.version}))


class Server:
    def __init__(self, http: HTTPServer, server: asyncio.Server) -> None:
        self.http = http
        self.server = server
        self.port = server.sockets[0].getsockname()[1]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def serve():
    servers: list[Server] = []

    async def start(handler=echo, **limits) -> Server:
        http = HTTPServer(handler, dataclasses.replace(ServerLimits(), **limits))
        server = await asyncio.get_running_loop().create_server(http, "127.0.0.1", 0)
        servers.append(Server(http, server))
        return servers[-1]

    yield start
    for s in servers:
        s.server.close()
        await s.http.shutdown(0)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return status, headers, body


async def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await server.connect()
    try:
        writer.write(raw)
        async with asyncio.timeout(5):
            return await read_response(reader)
    finally:
        writer.close()


async def test_a_request_with_a_body_reaches_the_handler_whole(serve):
    server = await serve()
    status, headers, body = await exchange(server, b"POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\n"
                                                   b"Content-Length: 5\r\n\r\nhello")
    seen = orjson.loads(body)
    assert status == 200 and headers["content-type"] == "application/json" and "date" in headers
    assert seen == {"method": "POST", "path": "/v1/x", "raw_path": "/v1/x", "query": "a=1", "host": "h",
                    "x": "yes", "body": "hello", "version": "1.1"}
    assert "server" not in headers  # nothing about the software or its version


async def test_chunked_request_bodies_are_reassembled(serve):
    server = await serve()
    _, _, body = await exchange(server, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert orjson.loads(body)["body"] == "abcde"


async def test_keep_alive_serves_several_requests_on_one_connection(serve):
    server = await serve()
    reader, writer = await server.connect()
    for i in range(3):
        writer.write(b"GET /n%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
        status, _, body = await read_response(reader)
        assert status == 200 and orjson.loads(body)["path"] == f"/n{i}"
    writer.close()


async def test_pipelined_requests_are_answered_in_order(serve):
    server = await serve()
    reader, writer = await server.connect()
    writer.write(b"".join(b"GET /p%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(4)))
    paths = [orjson.loads((await read_response(reader))[2])["path"] for _ in range(4)]
    assert paths == ["/p0", "/p1", "/p2", "/p3"]
    writer.close()


async def test_http_1_0_closes_unless_asked_to_keep_alive(serve):
    server = await serve()
    reader, writer = await server.connect()
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()


async def test_streamed_responses_are_chunked_and_head_gets_no_body(serve):
    server = await serve()
    status, headers, body = await exchange(server, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 200 and headers["transfer-encoding"] == "chunked" and body == b"one two three"
    reader, writer = await server.connect()
    writer.write(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Content-Length:" in head
    status, _, body = await read_response(reader)  # the next response follows at once: no body was sent
    assert orjson.loads(body)["path"] == "/after"
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(serve):
    server = await serve()
    reader, writer = await server.connect()
    writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    async with asyncio.timeout(5):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        status, _, body = await read_response(reader)
    assert status == 200 and orjson.loads(body)["body"] == "ok"
    writer.close()


async def test_absolute_form_targets_and_dot_segments_are_normalized(serve):
    server = await serve()
    _, _, body = await exchange(server, b"GET http://other:9/a/b/../c/./d?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    seen = orjson.loads(body)
    assert seen["path"] == "/a/c/d" and seen["host"] == "other:9" and seen["query"] == "q=1"
    _, _, body = await exchange(server, b"GET /v1/../../etc/%70asswd HTTP/1.1\r\nHost: h\r\n\r\n")
    seen = orjson.loads(body)
    assert seen["path"] == "/etc/passwd" and seen["raw_path"] == "/etc/%70asswd"


async def test_an_oversized_head_gets_431(serve):
    server = await serve(max_header_bytes=1024, max_headers=10)
    status, _, body = await exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + b"a" * 2000 + b"\r\n\r\n")
    assert status == 431 and orjson.loads(body)["error"]["code"] == "request_header_too_large"
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(11))
    status, _, _ = await exchange(server, b"GET / HTTP/1.1\r\n" + many + b"\r\n")
    assert status == 431


async def test_a_slow_head_gets_408_and_an_idle_connection_is_closed(serve):
    server = await serve(header_read_timeout=0.2, keepalive_timeout=0.2)
    reader, writer = await server.connect()
    writer.write(b"GET / HTTP/1.1\r\nHo")
    async with asyncio.timeout(5):
        status, _, body = await read_response(reader)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "client_timeout"
    writer.close()
    reader, writer = await server.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await read_response(reader)
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed after the keep-alive timeout
    writer.close()


async def test_a_stalled_body_gets_408(serve):
    server = await serve(body_read_timeout=0.2)
    reader, writer = await server.connect()
    writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    async with asyncio.timeout(5):
        status, headers, _ = await read_response(reader)
    assert status == 408 and headers["connection"] == "close"
    writer.close()


async def test_too_large_bodies_are_refused_whether_announced_or_chunked(serve):
    server = await serve(max_body_bytes=8)
    status, _, body = await exchange(server, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789")
    assert status == 413 and orjson.loads(body)["error"]["code"] == "request_too_large"
    status, _, _ = await exchange(server, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          b"5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n")
    assert status == 413


async def test_connections_over_the_limit_get_503_and_are_closed(serve):
    server = await serve(max_connections=2)
    held = [await server.connect() for _ in range(2)]
    await asyncio.sleep(0.05)
    reader, writer = await server.connect()
    async with asyncio.timeout(5):
        status, _, body = await read_response(reader)
    assert status == 503 and orjson.loads(body)["error"]["code"] == "listener_overloaded"
    writer.close()
    for _, w in held:
        w.close()


async def test_requests_over_the_stream_limit_get_503(serve):
    server = await serve(max_streams=1)
    _, hanging = await server.connect()
    hanging.write(b"GET /hang HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.sleep(0.05)
    status, _, _ = await exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 503
    hanging.close()


async def test_a_client_that_leaves_cancels_its_handler(serve):
    cancelled = asyncio.Event()

    async def wait_forever(request: HTTPRequest) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await serve(wait_forever)
    _, writer = await server.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.close()
    async with asyncio.timeout(5):
        await cancelled.wait()
    await asyncio.sleep(0.05)
    assert server.http.streams == 0 and not server.http.connections and not server.http.tasks


async def test_malformed_http_gets_400_and_a_handler_error_gets_500(serve):
    async def broken(request: HTTPRequest) -> None:
        raise ValueError("bug")

    server = await serve(broken)
    status, _, body = await exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 500 and orjson.loads(body)["error"]["type"] == "server_error"
    status, _, body = await exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and orjson.loads(body)["error"]["code"] == "bad_http_request"


async def test_a_slow_reader_makes_the_handler_wait_instead_of_buffering(serve):
    sent = []

    async def big(request: HTTPRequest) -> None:
        request.start(200, None, b"", None)
        for _ in range(64):
            await request.send(b"x" * 65536)
            sent.append(1)
        request.finish()

    server = await serve(big)
    reader, writer = await server.connect()
    writer.transport.pause_reading()
    writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.sleep(0.3)
    assert len(sent) < 64  # blocked on the client's full window, not buffered in memory
    writer.transport.resume_reading()
    async with asyncio.timeout(10):
        _, _, body = await read_response(reader)
    assert len(body) == 64 * 65536
    writer.close()

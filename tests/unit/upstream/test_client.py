"""The upstream client's pool and body framing, against a real loopback server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kthena_router.upstream import ConnectFailed, UpstreamClient, UpstreamClosed
from tests.unit.upstream.endpoint import CLOSE, OK, RESET, Endpoint, eventually, read_all, request

HEAD, BODY = request()


@pytest.fixture
async def client():
    c = UpstreamClient(connect_timeout=1.0, read_timeout=2.0, keepalive_per_host=2)
    yield c
    await c.close()


async def test_sequential_requests_reuse_one_connection(client):
    async with Endpoint() as endpoint:
        for _ in range(5):
            response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
            assert (response.status, response.reason, response.version) == (200, "OK", "1.1")
            assert response.keep_alive and response.content_length == 11 and not response.chunked
            assert await read_all(response) == b'{"ok":true}'
        assert endpoint.connections == 1
        assert len(endpoint.requests) == 5
        assert (client.open_connections, client.idle_connections) == (1, 1)


async def test_connections_are_opened_with_nagle_off(client):
    async with Endpoint() as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        (conn,) = client.open
        assert conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_the_request_head_and_body_arrive_unchanged(client):
    async with Endpoint() as endpoint:
        big = b"x" * 100_000  # above the size joined to the head in one write
        for body in (b"", b'{"model":"m"}', big):
            head, _ = request(body=body)
            await read_all(await client.send("127.0.0.1", endpoint.port, head, body))
        assert endpoint.requests == [request(body=b"")[0], b"".join(request(body=b'{"model":"m"}')),
                                     b"".join(request(body=big))]


async def test_parallel_requests_open_separate_connections_and_the_pool_keeps_a_bounded_number(client):
    async with Endpoint([[0.05, OK]] * 4) as endpoint:
        responses = await asyncio.gather(*(client.send("127.0.0.1", endpoint.port, HEAD, BODY)
                                           for _ in range(4)))
        assert endpoint.connections == 4
        assert client.open_connections == 4
        for response in responses:
            await read_all(response)
        assert (client.open_connections, client.idle_connections) == (2, 2)  # keepalive_per_host=2


async def test_the_response_headers_are_kept_raw_in_order_and_looked_up_case_insensitively(client):
    reply = (b"HTTP/1.1 201 Created Fine\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\nContent-Length: 0\r\n\r\n")
    async with Endpoint([[reply]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert (response.status, response.reason) == (201, "Created Fine")
        assert response.headers == [(b"X-B", b"1"), (b"x-a", b"2"), (b"X-B", b"3"), (b"Content-Length", b"0")]
        assert response.header(b"x-b") == b"1"
        assert response.header(b"x-a") == b"2"
        assert response.header(b"x-c") is None
        assert await read_all(response) == b""


async def test_a_body_in_one_packet_is_read_without_waiting(client):
    async with Endpoint() as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        # The head and body arrived together, so neither read suspends: a coroutine that finishes on the
        # first send() never yielded to the loop.
        for expected in (b'{"ok":true}', b""):
            coroutine = response.read()
            with pytest.raises(StopIteration) as done:
                coroutine.send(None)
            assert done.value.value == expected
        response.release()


async def test_a_chunked_body_arrives_piece_by_piece_without_its_framing(client):
    async def trickle(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")

    async with Endpoint([[trickle]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert response.chunked and response.content_length is None and response.keep_alive
        assert await response.read() == b"hello"
        assert await response.read() == b" world"
        assert await response.read() == b""
        response.release()
        assert client.idle_connections == 1


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused(client):
    async with Endpoint([[b"HTTP/1.1 200 OK\r\n\r\npart one,", 0.02, b" part two", CLOSE]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert response.content_length is None and not response.chunked and not response.keep_alive
        assert await read_all(response) == b"part one, part two"
        assert client.open_connections == 0
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        assert endpoint.connections == 2


async def test_connection_close_from_the_endpoint_means_no_reuse(client):
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with Endpoint([[reply]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert not response.keep_alive
        assert await read_all(response) == b"ok"
        assert client.open_connections == 0


async def test_http_1_0_responses_are_reused_only_when_they_ask_for_keep_alive(client):
    replies = [[b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"],
               [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"]]
    async with Endpoint(replies) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert (response.version, response.keep_alive) == ("1.0", True)
        await read_all(response)
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert (response.version, response.keep_alive) == ("1.0", False)
        await read_all(response)
        assert endpoint.connections == 1 and client.open_connections == 0


async def test_a_head_response_has_no_body_and_its_connection_is_reused(client):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"
    async with Endpoint([[reply]]) as endpoint:
        head, _ = request(method="HEAD", body=b"")
        response = await client.send("127.0.0.1", endpoint.port, head, b"", head_only=True)
        assert response.status == 200 and response.content_length == 11
        assert await read_all(response) == b""
        # The next response on the same connection is parsed from its own first byte.
        assert await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY)) == b'{"ok":true}'
        assert endpoint.connections == 1


async def test_a_response_arriving_byte_by_byte_is_parsed_whole(client):
    reply = (b"HTTP/1.1 200 Very OK\r\nX-Long-Header-Name: some value\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4\r\nabcd\r\n0\r\n\r\n")

    async def dribble(writer):
        for index in range(len(reply)):
            writer.write(reply[index:index + 1])
            await writer.drain()
            await asyncio.sleep(0.001)

    async with Endpoint([[dribble]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert (response.status, response.reason) == (200, "Very OK")
        assert response.header(b"x-long-header-name") == b"some value"
        assert await read_all(response) == b"abcd"
        assert client.idle_connections == 1


async def test_interim_responses_are_skipped(client):
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
    async with Endpoint([[interim, 0.02, OK]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert response.status == 200 and response.reason == "OK"
        assert response.header(b"link") is None
        assert await read_all(response) == b'{"ok":true}'


async def test_responses_without_a_body_by_status_end_at_the_head(client):
    async with Endpoint([[b"HTTP/1.1 204 No Content\r\n\r\n"], [b"HTTP/1.1 304 Not Modified\r\n\r\n"]]) as endpoint:
        for status in (204, 304):
            response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
            assert response.status == status
            assert await read_all(response) == b""
        assert endpoint.connections == 1


async def test_a_slow_reader_pauses_the_endpoint_instead_of_buffering_its_body():
    size = 24 * 1024 * 1024
    pattern = bytes(range(256)) * (size // 256)
    stuck: list[int] = []

    async def flood(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(pattern)  # all at once: what the client does not read stays in the server's buffer
        await asyncio.sleep(0.3)
        stuck.append(writer.transport.get_write_buffer_size())
        await writer.drain()

    client = UpstreamClient(connect_timeout=1.0, read_timeout=5.0)
    try:
        async with Endpoint([[flood]]) as endpoint:
            response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
            await asyncio.sleep(0.4)  # the reader is busy elsewhere
            # The client holds at most its high-water mark plus a read's worth; loopback socket buffers a
            # few MiB more; the rest must still be waiting in the server.
            assert stuck and stuck[0] > 8 * 1024 * 1024
            assert response._buffered <= 512 * 1024
            received = bytearray()
            while piece := await response.read():
                received += piece
            assert len(received) == size and received == pattern
            response.release()
            assert client.idle_connections == 1
    finally:
        await client.close()


async def test_a_connection_paused_by_a_large_unread_body_is_pooled_reading_again(client):
    size = 300 * 1024  # crosses the high-water mark in the read that also completes it
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size
    async with Endpoint([[reply]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        await asyncio.sleep(0.1)
        response.release()  # the body came whole, though nobody read it
        assert client.idle_connections == 1
        assert await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY)) == b'{"ok":true}'
        assert endpoint.connections == 1


async def test_a_large_request_body_waits_for_the_endpoint_to_take_it(client):
    body = b"y" * (16 * 1024 * 1024)
    async with Endpoint() as endpoint:
        endpoint.read_delay = 0.2  # the body backs up in the socket and the client's transport
        head, _ = request(body=body)
        response = await client.send("127.0.0.1", endpoint.port, head, body)
        assert await read_all(response) == b'{"ok":true}'
        assert endpoint.requests == [head + body]


@pytest.mark.parametrize("ending", [CLOSE, RESET])
async def test_an_idle_connection_closed_by_the_endpoint_leaves_the_pool_at_once(client, ending):
    async with Endpoint([[OK, 0.01, ending]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        await eventually(lambda: client.open_connections == 0)
        assert client.idle_connections == 0


async def test_bytes_arriving_on_an_idle_connection_drop_it_from_the_pool(client):
    async with Endpoint([[OK, 0.02, b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        await eventually(lambda: client.open_connections == 0)
        assert client.idle_connections == 0


async def test_idle_connections_are_closed_after_the_idle_timeout():
    client = UpstreamClient(connect_timeout=1.0, read_timeout=1.0, idle_timeout=0.2)
    try:
        async with Endpoint() as endpoint:
            await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
            assert client.idle_connections == 1
            await eventually(lambda: client.open_connections == 0, within=2.0)
            assert client.idle_connections == 0
            await eventually(lambda: endpoint.client_closes == 1)
    finally:
        await client.close()


async def test_forgetting_an_endpoint_closes_its_idle_connections_only(client):
    async with Endpoint() as first, Endpoint() as second:
        await read_all(await client.send("127.0.0.1", first.port, HEAD, BODY))
        await read_all(await client.send("127.0.0.1", second.port, HEAD, BODY))
        client.forget_except({("127.0.0.1", second.port)})
        assert (client.open_connections, client.idle_connections) == (1, 1)
        await read_all(await client.send("127.0.0.1", second.port, HEAD, BODY))
        assert second.connections == 1


async def test_closing_the_client_closes_busy_and_idle_connections():
    client = UpstreamClient(connect_timeout=1.0, read_timeout=5.0)
    async with Endpoint() as idle, Endpoint([[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"]]) as busy:
        await read_all(await client.send("127.0.0.1", idle.port, HEAD, BODY))
        response = await client.send("127.0.0.1", busy.port, HEAD, BODY)
        assert await response.read() == b"ab"
        reading = asyncio.ensure_future(response.read())
        await asyncio.sleep(0.01)
        assert (client.open_connections, client.idle_connections) == (2, 1)
        await client.close()
        assert (client.open_connections, client.idle_connections) == (0, 0)
        with pytest.raises(UpstreamClosed, match="closed"):
            await reading
        with pytest.raises(ConnectFailed, match="client is closed"):
            await client.send("127.0.0.1", idle.port, HEAD, BODY)
        await eventually(lambda: idle.client_closes == 1 and busy.client_closes == 1)

"""The upstream client against endpoints that refuse, reset, hang or speak broken HTTP: typed failures, no leaks."""

from __future__ import annotations

import asyncio
import collections
import random
import socket

import pytest

from kthena_router.upstream import (
    ConnectFailed,
    MalformedResponse,
    UpstreamClient,
    UpstreamClosed,
    UpstreamError,
    UpstreamTimeout,
)
from tests.unit.upstream.endpoint import CLOSE, HANG, OK, RESET, Endpoint, eventually, read_all, request

HEAD, BODY = request()
PARTIAL_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst ten."


@pytest.fixture
async def client():
    c = UpstreamClient(connect_timeout=1.0, read_timeout=0.2)
    yield c
    await c.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_refused_connection_raises_connect_failed_naming_the_endpoint(client):
    port = unused_port()
    with pytest.raises(ConnectFailed, match=f"127.0.0.1:{port}"):
        await client.send("127.0.0.1", port, HEAD, BODY)
    assert client.open_connections == 0


async def test_every_failure_is_an_upstream_error():
    assert all(issubclass(kind, UpstreamError)
               for kind in (ConnectFailed, UpstreamClosed, UpstreamTimeout, MalformedResponse))


async def test_a_pooled_connection_closed_as_it_is_reused_is_replaced_transparently(client):
    # The keep-alive race: the endpoint takes the second request on the pooled connection, then closes it
    # without answering, as a server timing out an idle connection does.
    async with Endpoint([[OK], [CLOSE]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await read_all(response) == b'{"ok":true}'
        assert endpoint.connections == 2 and len(endpoint.requests) == 3
        assert client.open_connections == 1


async def test_a_pooled_connection_reset_as_it_is_reused_is_replaced_transparently(client):
    async with Endpoint([[OK], [RESET]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        assert await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY)) == b'{"ok":true}'
        assert endpoint.connections == 2


async def test_a_fresh_connection_closed_before_responding_is_not_retried(client):
    async with Endpoint([[CLOSE]]) as endpoint:
        with pytest.raises(UpstreamClosed, match=f"127.0.0.1:{endpoint.port}") as raised:
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert raised.value.response_started is False
        assert len(endpoint.requests) == 1
        assert client.open_connections == 0


async def test_a_retried_request_that_fails_again_is_not_retried_twice(client):
    async with Endpoint([[OK], [CLOSE], [CLOSE]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        with pytest.raises(UpstreamClosed) as raised:
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert raised.value.response_started is False
        assert len(endpoint.requests) == 3
        assert client.open_connections == 0


async def test_a_reset_mid_head_is_reported_as_started(client):
    async with Endpoint([[b"HTTP/1.1 200 OK\r\nContent-Le", 0.05, RESET]]) as endpoint:
        with pytest.raises(UpstreamClosed, match="mid-head") as raised:
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert raised.value.response_started is True
        assert client.open_connections == 0


async def test_a_reset_on_a_reused_connection_after_some_response_bytes_is_not_retried(client):
    async with Endpoint([[OK], [b"HTTP/1.1 200", 0.05, RESET]]) as endpoint:
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        with pytest.raises(UpstreamClosed) as raised:
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert raised.value.response_started is True
        assert len(endpoint.requests) == 2
        assert client.open_connections == 0


@pytest.mark.parametrize("ending", [RESET, CLOSE])
async def test_a_connection_lost_mid_body_fails_the_read_after_the_bytes_that_came(client, ending):
    async with Endpoint([[PARTIAL_BODY, 0.05, ending]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await response.read() == b"first ten."
        with pytest.raises(UpstreamClosed, match="mid-response") as raised:
            await response.read()
        assert raised.value.response_started is True
        assert client.open_connections == 0
        response.release()
        assert client.open_connections == 0


async def test_an_endpoint_silent_after_the_request_times_out(client):
    async with Endpoint([[HANG]]) as endpoint:
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout, match=f"127.0.0.1:{endpoint.port} sent no response head for 0.2s"):
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        elapsed = asyncio.get_running_loop().time() - started
        assert 0.2 <= elapsed < 2.0
        assert client.open_connections == 0
        await eventually(lambda: endpoint.client_closes == 1)


async def test_an_endpoint_silent_mid_body_times_out_the_read(client):
    async with Endpoint([[PARTIAL_BODY, HANG]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await response.read() == b"first ten."
        with pytest.raises(UpstreamTimeout, match="no response bytes"):
            await response.read()
        assert client.open_connections == 0
        response.release()


async def test_an_endpoint_that_never_takes_the_request_body_times_out(client):
    body = b"y" * (32 * 1024 * 1024)  # far more than the socket buffers hold
    head, _ = request(body=body)
    async with Endpoint() as endpoint:
        endpoint.read_delay = 30.0
        with pytest.raises(UpstreamTimeout, match="no response head"):
            await client.send("127.0.0.1", endpoint.port, head, body)
        assert client.open_connections == 0


async def test_a_stream_slower_than_the_timeout_overall_but_not_between_pieces_is_not_cut(client):
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for _ in range(6):
        pieces += [0.1, b"3\r\nabc\r\n"]
    async with Endpoint([[*pieces, b"0\r\n\r\n"]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await read_all(response) == b"abc" * 6  # 0.6 s in all, 0.1 s between pieces
        assert client.idle_connections == 1


@pytest.mark.parametrize("reply", [
    b"HTTX/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
])
async def test_a_malformed_response_head_is_reported(client, reply):
    async with Endpoint([[reply, HANG]]) as endpoint:
        with pytest.raises(MalformedResponse, match=f"127.0.0.1:{endpoint.port} sent a malformed response"):
            await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert client.open_connections == 0


async def test_malformed_chunked_framing_fails_the_read(client):
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    async with Endpoint([[reply, 0.05, b"zz\r\n", HANG]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await response.read() == b"abc"
        with pytest.raises(MalformedResponse):
            await response.read()
        assert client.open_connections == 0


async def test_cancelling_a_send_closes_its_connection(client):
    async with Endpoint([[HANG]]) as endpoint:
        sending = asyncio.ensure_future(client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        await eventually(lambda: len(endpoint.requests) == 1)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        assert client.open_connections == 0 and client.idle_connections == 0
        await eventually(lambda: endpoint.client_closes == 1)


async def test_cancelling_a_send_while_it_connects_leaves_no_connection_behind(client):
    async with Endpoint() as endpoint:
        for ticks in range(8):  # cancel at each step of the connect, before and after the socket is up
            sending = asyncio.ensure_future(client.send("127.0.0.1", endpoint.port, HEAD, BODY))
            for _ in range(ticks):
                await asyncio.sleep(0)
            sending.cancel()
            try:
                (await sending).release()
            except asyncio.CancelledError:
                pass
            assert client.open_connections == client.idle_connections
        await asyncio.sleep(0.05)
        assert client.open_connections == client.idle_connections <= 1
        await client.close()
        await eventually(lambda: all(w.transport.is_closing() for w in endpoint.writers))


async def test_cancelling_a_read_closes_the_connection_and_it_is_never_reused(client):
    async with Endpoint([[PARTIAL_BODY, HANG]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        assert await response.read() == b"first ten."
        reading = asyncio.ensure_future(response.read())
        await asyncio.sleep(0.01)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        response.release()
        assert client.open_connections == 0 and client.idle_connections == 0
        await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY))
        assert endpoint.connections == 2


async def test_aborting_a_response_closes_its_connection(client):
    async with Endpoint([[PARTIAL_BODY, HANG]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        response.abort()
        response.abort()
        response.release()
        assert client.open_connections == 0
        await eventually(lambda: endpoint.client_closes == 1)


async def test_releasing_a_response_before_its_body_came_closes_the_connection(client):
    async with Endpoint([[PARTIAL_BODY, HANG]]) as endpoint:
        response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
        response.release()
        assert client.open_connections == 0 and client.idle_connections == 0


async def test_after_a_run_of_faults_no_connection_is_left_open(client):
    port = unused_port()
    script = [[CLOSE], [RESET], [HANG], [b"junk\r\n\r\n", HANG], [PARTIAL_BODY, RESET], [PARTIAL_BODY, HANG]]
    async with Endpoint(script) as endpoint:
        for _ in script:
            with pytest.raises(UpstreamError):
                response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
                try:
                    await read_all(response)
                finally:
                    response.release()
        with pytest.raises(ConnectFailed):
            await client.send("127.0.0.1", port, HEAD, BODY)
        assert client.open_connections == 0 and client.idle_connections == 0
        assert await read_all(await client.send("127.0.0.1", endpoint.port, HEAD, BODY)) == b'{"ok":true}'
        assert client.open_connections == 1


async def test_a_mixed_run_of_answers_faults_and_cancellations_leaves_only_pooled_connections():
    rng = random.Random(7)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    choices = [[OK], [OK], [chunked], [0.01, OK], [CLOSE], [RESET], [HANG], [PARTIAL_BODY, RESET],
               [PARTIAL_BODY, HANG], [b"HTTP/1.1 2", 0.01, CLOSE], [b"nonsense\r\n\r\n", HANG]]
    client = UpstreamClient(connect_timeout=1.0, read_timeout=0.2, keepalive_per_host=4)
    outcomes: collections.Counter[str] = collections.Counter()

    async def one() -> None:
        try:
            response = await client.send("127.0.0.1", endpoint.port, HEAD, BODY)
            try:
                await read_all(response)
            finally:
                response.release()
            outcomes["ok"] += 1
        except UpstreamError as exc:
            outcomes[type(exc).__name__] += 1

    try:
        async with Endpoint([rng.choice(choices) for _ in range(300)]) as endpoint:
            for _ in range(8):
                running = [asyncio.ensure_future(one()) for _ in range(30)]
                await asyncio.sleep(rng.random() * 0.02)
                for doomed in rng.sample(running, 4):
                    doomed.cancel()
                results = await asyncio.gather(*running, return_exceptions=True)
                assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
                assert client.open_connections == client.idle_connections <= 4
            assert outcomes["ok"] and outcomes["UpstreamClosed"] and outcomes["UpstreamTimeout"]
            await client.close()
            await eventually(lambda: all(w.transport.is_closing() for w in endpoint.writers))
    finally:
        await client.close()

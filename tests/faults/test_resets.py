"""Endpoints whose connection ends in the middle of an exchange: before the answer (502, never resent: the
endpoint may have acted on it), within a plain body (the client's connection is cut, so the body cannot
pass for complete) or within a stream (an error event ends it)."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.backends import (
    SSE_END,
    SSE_HEAD,
    STREAM_BODY,
    Backend,
    error_of,
    events,
    scene,
    sse_chunk,
)
from tests.faults.conftest import IPS


async def reset(reader, writer, request):
    writer.transport.abort()


async def close(reader, writer, request):
    writer.close()


@pytest.mark.parametrize("behaviour", [reset, close], ids=["reset", "close"])
async def test_a_connection_lost_before_the_answer_is_a_502_and_the_request_is_not_resent(
        tmp_path, port, behaviour):
    backends = [Backend(IPS[0], port, behaviour), Backend(IPS[1], port, behaviour)]
    async with scene(tmp_path, backends, outlier_consecutive_failures=0) as s:
        status, body = await s.post()
        assert status == 502 and error_of(body)["code"] == "upstream_error"
        assert sum(b.requests for b in backends) == 1


async def test_a_reset_within_a_plain_body_cuts_the_client_connection(tmp_path, port):
    async def reset_within_body(reader, writer, request):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\"")
        await writer.drain()
        await asyncio.sleep(0.05)  # the first part reaches the client before the reset
        writer.transport.abort()

    async with scene(tmp_path, [Backend(IPS[0], port, reset_within_body)]) as s:
        await s.post_and_expect_a_cut_body()


async def test_a_reset_within_a_stream_ends_it_with_an_error_event(tmp_path, port):
    async def reset_within_stream(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("a"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async with scene(tmp_path, [Backend(IPS[0], port, reset_within_stream)]) as s:
        status, body = await s.post(STREAM_BODY)
        assert status == 200
        first, last = events(body)
        assert b'"text":"a"' in first
        assert error_of(last)["code"] == "upstream_error"


async def test_a_stream_that_ends_cleanly_relays_every_event_over_one_upstream_connection(tmp_path, port):
    peers: set[tuple[str, int]] = set()

    async def stream(reader, writer, request):
        peers.add(writer.get_extra_info("peername"))
        writer.write(SSE_HEAD)
        for i in range(20):
            writer.write(sse_chunk(str(i)))
            await writer.drain()
        writer.write(SSE_END)

    async with scene(tmp_path, [Backend(IPS[0], port, stream)]) as s:
        for _ in range(5):
            status, body = await s.post(STREAM_BODY)
            assert status == 200 and len(events(body)) == 21 and body.endswith(b"data: [DONE]\n\n")
        assert len(peers) == 1  # the upstream connection was kept alive and reused

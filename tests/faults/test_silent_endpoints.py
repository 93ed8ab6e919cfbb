"""Endpoints that go quiet: `upstream_read_timeout` bounds each silence (not the whole answer). Before the
router has answered the client that is a 504; once a stream has begun, an error event ends it; within a
plain body, the client's connection is cut."""

from __future__ import annotations

import asyncio
import time

from tests.faults.backends import (
    SSE_END,
    SSE_HEAD,
    STREAM_BODY,
    Backend,
    error_of,
    events,
    hang,
    scene,
    sse_chunk,
)
from tests.faults.conftest import IPS

QUIET = {"upstream_read_timeout": 0.3, "outlier_consecutive_failures": 0}


async def test_silence_before_the_response_head_is_a_504_and_the_upstream_connection_is_closed(tmp_path, port):
    backend = Backend(IPS[0], port, hang)
    async with scene(tmp_path, [backend], **QUIET) as s:
        start = time.monotonic()
        status, body = await s.post()
        took = time.monotonic() - start
        error = error_of(body)
        assert status == 504 and error["type"] == "timeout_error" and error["code"] == "upstream_timeout"
        assert 0.3 <= took < 3.0
        async with asyncio.timeout(1):
            await backend.closed.wait()


async def test_silence_after_the_response_head_of_a_plain_body_is_a_504(tmp_path, port):
    async def head_then_hang(reader, writer, request):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        await hang(reader, writer, request)

    async with scene(tmp_path, [Backend(IPS[0], port, head_then_hang)], **QUIET) as s:
        status, body = await s.post()
        assert status == 504 and error_of(body)["code"] == "upstream_timeout"


async def test_silence_within_a_plain_body_cuts_the_client_connection(tmp_path, port):
    async def part_then_hang(reader, writer, request):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\"")
        await hang(reader, writer, request)

    async with scene(tmp_path, [Backend(IPS[0], port, part_then_hang)], **QUIET) as s:
        await s.post_and_expect_a_cut_body()


async def test_silence_before_the_first_event_ends_the_stream_with_an_error_event(tmp_path, port):
    async def head_then_hang(reader, writer, request):
        writer.write(SSE_HEAD)
        await hang(reader, writer, request)

    async with scene(tmp_path, [Backend(IPS[0], port, head_then_hang)], **QUIET) as s:
        status, body = await s.post(STREAM_BODY)
        assert status == 200
        [only] = events(body)
        assert error_of(only)["code"] == "upstream_timeout"


async def test_silence_mid_stream_ends_it_with_an_error_event(tmp_path, port):
    async def event_then_hang(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("a"))
        await hang(reader, writer, request)

    backend = Backend(IPS[0], port, event_then_hang)
    async with scene(tmp_path, [backend], **QUIET) as s:
        status, body = await s.post(STREAM_BODY)
        assert status == 200
        first, last = events(body)
        assert b'"text":"a"' in first and error_of(last)["code"] == "upstream_timeout"
        async with asyncio.timeout(1):
            await backend.closed.wait()


async def test_a_slow_stream_that_never_pauses_past_the_read_timeout_completes(tmp_path, port):
    async def slow_stream(reader, writer, request):
        writer.write(SSE_HEAD)
        for i in range(12):  # 0.6 s in all, 0.05 s between events
            writer.write(sse_chunk(str(i)))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(SSE_END)

    async with scene(tmp_path, [Backend(IPS[0], port, slow_stream)], **QUIET) as s:
        status, body = await s.post(STREAM_BODY)
        assert status == 200 and len(events(body)) == 13 and body.endswith(b"data: [DONE]\n\n")

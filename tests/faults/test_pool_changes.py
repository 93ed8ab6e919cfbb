"""Endpoints leaving the pool (their Pod manifest rewritten) while a stream to them is in flight: the stream
finishes intact, and new requests go to the endpoints that remain."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.backends import (
    BODY,
    SSE_END,
    SSE_HEAD,
    STREAM_BODY,
    Backend,
    Scene,
    events,
    scene,
    sse_chunk,
)
from tests.faults.conftest import IPS


def paused_stream(release: asyncio.Event):
    """A stream of two events with a pause between them until `release` is set."""
    async def behaviour(reader, writer, request):
        writer.write(SSE_HEAD + sse_chunk("first"))
        await writer.drain()
        await release.wait()
        writer.write(sse_chunk("second") + SSE_END)
    return behaviour


async def stream_across_removal(s: Scene, leaving: Backend, staying: Backend) -> bytes:
    """Stream from `leaving`, move the pool to `staying` during the pause, and return what followed it."""
    release = asyncio.Event()
    leaving.behaviour = paused_stream(release)
    s.move_pool_to([leaving])
    await s.wait_for_endpoints([leaving])
    async with aiohttp.ClientSession() as session, session.post(s.url, json=STREAM_BODY) as resp:
        assert b"first" in await resp.content.readuntil(b"\n\n")
        s.move_pool_to([staying])
        await s.wait_for_endpoints([staying])
        release.set()
        return await resp.read()


async def test_an_endpoint_removed_mid_stream_finishes_it_and_gets_no_new_requests(tmp_path, port):
    leaving, staying = Backend(IPS[0], port), Backend(IPS[1], port)
    async with scene(tmp_path, [leaving, staying], outlier_consecutive_failures=0) as s:
        rest = await stream_across_removal(s, leaving, staying)
        assert b"second" in rest and rest.endswith(b"data: [DONE]\n\n") and len(events(rest)) == 2
        for i in range(5):
            status, _ = await s.post({**BODY, "prompt": f"after {i}"})
            assert status == 200
        assert leaving.requests == 1 and staying.requests == 5


async def test_the_connection_to_a_removed_endpoint_is_closed_once_its_stream_ends(tmp_path, port):
    leaving, staying = Backend(IPS[0], port), Backend(IPS[1], port)
    async with scene(tmp_path, [leaving, staying], outlier_consecutive_failures=0) as s:
        await stream_across_removal(s, leaving, staying)
        async with asyncio.timeout(1):
            await leaving.closed.wait()

"""A guard on the cost of the request path that does not depend on the machine's speed.

It counts Python and C function calls made by the router per proxied request (non-streaming and SSE),
with everything else in the process idle, and fails when the count grows past the budget below. The
count is deterministic for a given code path, so the guard holds on a loaded CI machine where timings
would not. When a change adds work to the hot path on purpose, raise the budget in the same change and
say why; when it removes work, lower it.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from tests.integration.harness import free_port, pod, pool, route_to_pool, start_router, write_manifests

# Calls per request measured when the budget was last set (347 and 392), plus about 4 % headroom.
BUDGET = {"json": 360, "sse": 405}
WARMUP = 30
MEASURED = 200

_JSON_BODY = (b'{"id":"cmpl-1","object":"text_completion","model":"m","choices":[{"index":0,"text":"hi",'
              b'"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
_JSON_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % len(_JSON_BODY)) + _JSON_BODY
_SSE_EVENTS = b"".join(b'data: {"choices":[{"index":0,"text":"t%d"}]}\n\n' % i for i in range(8)) + \
    b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":8,"total_tokens":9}}\n\n' + \
    b"data: [DONE]\n\n"
_SSE_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"%x\r\n" % len(_SSE_EVENTS) + _SSE_EVENTS + b"\r\n0\r\n\r\n")


class _Upstream(asyncio.Protocol):
    """Answers every request with a canned response (one per request head seen). Its parsing stays in this
    module, not in a shared helper: calls made from here are left out of the count."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            if head.startswith(b"GET /metrics"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            elif b'"stream":true' in rest[:length]:
                self.transport.write(_SSE_RESPONSE)
            else:
                self.transport.write(_JSON_RESPONSE)


class _Client(asyncio.Protocol):
    def __init__(self):
        self.buffer = b""
        self.waiter: asyncio.Future | None = None
        self.end = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.end in self.buffer and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.buffer)

    async def request(self, raw: bytes, end: bytes) -> bytes:
        self.buffer = b""
        self.end = end
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _count_calls(run):
    """Calls made outside this test module while `run` (a coroutine) is awaited."""
    here = __file__
    counted = 0

    def profiler(frame, event, arg):
        nonlocal counted
        if event in ("call", "c_call") and frame.f_code.co_filename != here:
            counted += 1

    async def measured():
        sys.setprofile(profiler)
        try:
            await run
        finally:
            sys.setprofile(None)
    return measured, lambda: counted


@pytest.mark.parametrize("kind", ["json", "sse"])
def test_calls_per_proxied_request_stay_within_budget(tmp_path, kind):
    # The router runs on uvloop; so does this count (the loop's own work is then C, not counted).
    uvloop.run(_measure(tmp_path, kind))


async def _measure(tmp_path, kind):
    loop = asyncio.get_running_loop()
    upstream_port = free_port()
    upstream = await loop.create_server(_Upstream, "127.0.0.1", upstream_port)
    router_port = free_port()
    write_manifests(
        tmp_path, "c.yaml",
        pool("p", upstream_port, {"app": "up"}), pod("up-0", "127.0.0.1", {"app": "up"}), route_to_pool("p"))
    router = await start_router(tmp_path, port=router_port, scrape_interval=3600.0, reload_interval=3600.0,
                                access_log=True, access_log_output=str(tmp_path / "access.log"))
    try:
        _, client = await loop.create_connection(_Client, "127.0.0.1", router_port)
        stream = b"true" if kind == "sse" else b"false"
        body = b'{"model":"m","prompt":"hello","max_tokens":8,"stream":%s}' % stream
        raw = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"User-Agent: guard\r\nAccept: */*\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        end = b"0\r\n\r\n" if kind == "sse" else b'"total_tokens":2}}'
        for _ in range(WARMUP):
            await client.request(raw, end)

        async def run():
            for _ in range(MEASURED):
                await client.request(raw, end)

        measured, counted = _count_calls(run())
        await measured()
        per_request = counted() / MEASURED
        print(f"{kind}: {per_request:.0f} calls per request (budget {BUDGET[kind]})")
        assert per_request <= BUDGET[kind], (
            f"the {kind} request path now makes {per_request:.0f} calls per request, over its budget of "
            f"{BUDGET[kind]}: find what was added (cProfile the test) or, if it is worth it, raise the budget")
        client.transport.close()
    finally:
        await router.app.shutdown()
        upstream.close()

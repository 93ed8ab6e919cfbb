"""Raw request bytes for the hostile-input tests, a loopback endpoint that records every request it gets,
and a router in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.integration.harness import (
    COMPLETION_RESPONSE,
    RunningRouter,
    free_port,
    pod,
    pool,
    read_request,
    route_to_pool,
    start_router,
    write_manifests,
)

ENDPOINT_IP = "127.0.0.31"
ROUTE = route_to_pool("p")
OK = COMPLETION_RESPONSE

SMUGGLED_MODEL = b"smuggled-model"
GOOD = b'{"model":"m","prompt":"hi"}'


def post(body: bytes, *headers: bytes, length: bool = True, target: bytes = b"/v1/completions") -> bytes:
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: x", b"Content-Type: application/json", *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size_line: bytes | None = None, *headers: bytes) -> bytes:
    size = size_line if size_line is not None else b"%x" % len(body)
    return post(size + b"\r\n" + body + b"\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", *headers, length=False)


# A complete, valid request: when it reaches the endpoint, framing was desynchronised.
SMUGGLED = post(b'{"model":"%s","prompt":"x"}' % SMUGGLED_MODEL)


class Endpoint:
    """A model-server stand-in on loopback: reads each request the router sends (head, Content-Length body),
    keeps it in `seen` and answers 200, or whatever `behaviour` writes. The router's scrapes of `/metrics`
    and `/v1/models` get empty answers and are not kept."""

    def __init__(self) -> None:
        self.ip = ENDPOINT_IP
        self.port = free_port(ENDPOINT_IP)
        self.seen: list[bytes] = []
        self.behaviour: Callable[[asyncio.StreamWriter, bytes], Awaitable[None]] | None = None
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def smuggled(self) -> int:
        return sum(SMUGGLED_MODEL in request for request in self.seen)

    async def start(self) -> Endpoint:
        self._server = await asyncio.start_server(self._handle, self.ip, self.port)
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection; the handlers end on their own."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._handlers.values()):
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            while True:
                head, body = await read_request(reader)
                request = head + body
                if head.startswith((b"GET /metrics", b"GET /v1/models")):
                    body = b"" if head.startswith(b"GET /metrics") else b'{"object":"list","data":[]}'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                self.seen.append(request)
                if self.behaviour is not None:
                    await self.behaviour(writer, request)
                elif head.startswith(b"HEAD "):
                    writer.write(OK.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
                else:
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            del self._handlers[task]
            writer.transport.abort()


async def router_for(tmp_path: Path, endpoint: Endpoint, **settings) -> RunningRouter:
    """A router on 127.0.0.1 whose one route sends everything to a pool holding `endpoint`."""
    write_manifests(tmp_path, "c.yaml", pool("p", endpoint.port, {"app": "be"}), ROUTE,
                    pod("be-0", endpoint.ip, {"app": "be"}))
    return await start_router(tmp_path, **settings)


async def settled(router: RunningRouter, timeout: float = 3.0) -> dict[str, int]:
    """Wait until no request, stream or upstream exchange is in progress; return the runtime counts."""
    async with asyncio.timeout(timeout):
        while True:
            stats = router.app.runtime_stats()
            if stats["active_requests"] == 0 and stats["inflight"] == 0 and stats["streams"] == 0 \
                    and stats["upstream_connections"] == stats["upstream_idle_connections"]:
                return stats
            await asyncio.sleep(0.02)


# Every client request in these tests ends within this, whatever the router does.
BOUNDED = aiohttp.ClientTimeout(total=5)


async def send_raw(port: int, *parts: bytes, pause: float = 0.0, read_timeout: float = 5.0) -> bytes:
    """Write `parts` to the router on a fresh connection (`pause` seconds between them) and read until it
    closes: everything it answered. A reset ends the reading, not the test; a router still silent after
    `read_timeout` raises TimeoutError, since every case here must end with the router closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b""
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(part)
        async with asyncio.timeout(read_timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return data

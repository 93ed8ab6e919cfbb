"""Model-server stand-ins that misbehave on purpose, and a router in front of them, all on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import RunningRouter, pod, pool, start_router, write_manifests

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: default}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: p}]
"""
COMPLETION = (b'{"id":"c","object":"text_completion","model":"m","choices":[{"index":0,"text":"ok",'
              b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(COMPLETION), COMPLETION)
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def sse_chunk(text: str) -> bytes:
    event = b'data: {"choices":[{"index":0,"text":"%s"}]}\n\n' % text.encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


SSE_END = b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n")
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


async def answer_ok(reader, writer, request) -> None:
    writer.write(OK)


@dataclass
class Backend:
    """One endpoint; `behaviour` handles each request (after its head and body have been read)."""

    ip: str
    port: int
    behaviour: Behaviour = answer_ok
    requests: int = 0
    open_connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set whenever a connection ends
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, self.ip, self.port)
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (a crashed model server)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if head.startswith(b"GET /metrics") or head.startswith(b"GET /v1/models"):
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")  # not scraped
                    continue
                self.requests += 1
                await self.behaviour(reader, writer, head + body)
                await writer.drain()
                if writer.is_closing():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open_connections -= 1
            self.writers.discard(writer)
            writer.close()
            self.closed.set()


async def router_for(tmp_path: Path, backends: list[Backend], **settings) -> RunningRouter:
    port = backends[0].port
    docs = [pool("p", port, {"app": "be"}), ROUTE]
    docs += [pod(f"be-{i}", b.ip, {"app": "be"}) for i, b in enumerate(backends)]
    write_manifests(tmp_path, "c.yaml", *docs)
    return await start_router(tmp_path, **settings)


def router_tasks() -> int:
    """Tasks in the loop other than the stand-in endpoints' connection handlers."""
    return sum(1 for t in asyncio.all_tasks() if "Backend._handle" not in repr(t.get_coro()))


async def settled(router: RunningRouter, timeout: float = 3.0) -> dict[str, int]:
    """Wait until no request, stream or upstream exchange is in progress; return the runtime counts."""
    async with asyncio.timeout(timeout):
        while True:
            stats = router.app.runtime_stats()
            if stats["active_requests"] == 0 and stats["inflight"] == 0 and stats["streams"] == 0 \
                    and stats["upstream_connections"] == stats["upstream_idle_connections"]:
                return stats
            await asyncio.sleep(0.02)

"""Model-server stand-ins that misbehave on purpose, the router in front of them, and the checks every fault
test ends with: the router's request and in-flight counts back at zero and no task left behind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.integration.harness import (
    COMPLETION_RESPONSE,
    RunningRouter,
    pod,
    pool,
    read_request,
    route_to_pool,
    start_router,
    write_manifests,
)

ROUTE = route_to_pool("p")
OK = COMPLETION_RESPONSE
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
SSE_END = b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n")
BODY = {"model": "m", "prompt": "hi", "max_tokens": 4}
STREAM_BODY = {**BODY, "stream": True}
BUDGET = 10.0  # seconds any one fault test may take, checks included; the usual is well under one


def sse_chunk(text: str) -> bytes:
    event = b'data: {"choices":[{"index":0,"text":"%s"}]}\n\n' % text.encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    writer.write(OK)


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """Say nothing until the router closes the connection."""
    await reader.read()


@dataclass(eq=False)
class Backend:
    """One endpoint that reads each request (head and body), then lets `behaviour` answer it.

    GETs of `/metrics` and `/v1/models` (the router's scraper) get a 404 and are not counted."""

    ip: str
    port: int
    behaviour: Behaviour = answer_ok
    requests: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when a connection that had a request ends
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, self.ip, self.port)
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a crashed model server would."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        served = False
        try:
            while True:
                head, body = await read_request(reader)
                if head.startswith((b"GET /metrics", b"GET /v1/models")):
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                self.requests += 1
                served = True
                await self.behaviour(reader, writer, head + body)
                await writer.drain()
                if writer.is_closing():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.handlers.discard(task)
            writer.transport.abort()
            if served:
                self.closed.set()


class Unaccepting:
    """A listening socket that never accepts, its accept queue full: connecting to it hangs (the kernel drops
    the SYNs), as with a model server whose process is stuck."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip = ip
        self.port = port
        self.listener = socket.socket()
        self.fillers: list[socket.socket] = []

    async def start(self) -> Unaccepting:
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.ip, self.port))
        self.listener.listen(0)
        loop = asyncio.get_running_loop()
        for _ in range(8):  # fill the queue: the first connect that does not complete shows it is full
            filler = socket.socket()
            filler.setblocking(False)
            try:
                async with asyncio.timeout(0.2):
                    await loop.sock_connect(filler, (self.ip, self.port))
            except TimeoutError:
                filler.close()
                return self
            self.fillers.append(filler)
        raise AssertionError("the accept queue never filled up")

    async def stop(self) -> None:
        for s in (*self.fillers, self.listener):
            s.close()


@dataclass(eq=False)
class Closed:
    """An endpoint address where nothing listens: connections are refused."""

    ip: str
    port: int

    async def start(self) -> Closed:
        return self

    async def stop(self) -> None:
        return None


Endpoint = Backend | Unaccepting | Closed


async def router_for(tmp_path: Path, backends: list[Endpoint], route: str = ROUTE, **settings) -> RunningRouter:
    """The router with one pool (`p`, one Pod per backend) behind `route` on the default Gateway; the access
    log goes to `tmp_path/access.log` as JSON."""
    write_manifests(tmp_path, "c.yaml", *manifests(backends, route))
    settings = {"access_log": True, "access_log_format": "json",
                "access_log_output": str(tmp_path / "access.log"), **settings}
    return await start_router(tmp_path, **settings)


def manifests(backends: list[Endpoint], route: str = ROUTE) -> list[str]:
    return [pool("p", backends[0].port, {"app": "be"}), route,
            *(pod(f"be-{b.ip.rsplit('.', 1)[1]}", b.ip, {"app": "be"}) for b in backends)]


@dataclass
class Scene:
    """A running router in front of `backends`, and what a test reads from it."""

    router: RunningRouter
    backends: list[Endpoint]
    tmp_path: Path
    route: str = ROUTE

    @property
    def url(self) -> str:
        return self.router.url + "/v1/completions"

    async def post(self, body: dict | None = None) -> tuple[int, bytes]:
        """POST a completion request; the status and the whole body as received."""
        async with aiohttp.ClientSession() as session, session.post(self.url, json=body or BODY) as resp:
            return resp.status, await resp.read()

    async def post_and_expect_a_cut_body(self) -> None:
        """POST a completion request whose 200 head arrives and whose body then breaks off: the router cut the
        client connection rather than pass on a short body as a whole one."""
        async with aiohttp.ClientSession() as session, session.post(self.url, json=BODY) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()

    async def access_log(self, lines: int) -> list[dict]:
        """The access log's entries once it has at least `lines` of them (it is written every 0.1 s)."""
        path = self.tmp_path / "access.log"
        while True:
            text = path.read_text() if path.exists() else ""
            entries = [orjson.loads(line) for line in text.splitlines()]
            if len(entries) >= lines:
                return entries
            await asyncio.sleep(0.05)

    def move_pool_to(self, backends: list[Endpoint]) -> None:
        """Rewrite the Pod manifests so the pool has exactly `backends`."""
        write_manifests(self.tmp_path, "c.yaml", *manifests(backends, self.route))

    async def wait_for_endpoints(self, backends: list[Endpoint]) -> None:
        want = sorted(b.ip for b in backends)
        await self.router.wait_for(lambda app: sorted(
            e.key.ip for p in app.state.snapshot.pools.values() for e in p.endpoints) == want)


@contextlib.asynccontextmanager
async def scene(tmp_path: Path, backends: list[Endpoint], route: str = ROUTE, **settings) -> AsyncIterator[Scene]:
    """Start the backends and a router; bound the test by `BUDGET`; afterwards check that every counter is back
    at zero and that no task was left behind, neither while the router runs nor once it has shut down."""
    owned = _backend_tasks(backends)
    before = _tasks(owned)
    for backend in backends:
        await backend.start()
    router = await router_for(tmp_path, backends, route, **settings)
    try:
        async with asyncio.timeout(BUDGET):
            running = _tasks(owned)
            yield Scene(router, backends, tmp_path, route)
            await settled(router)
            await _tasks_back_to(running, owned)
    finally:
        await router.app.shutdown()
        for backend in backends:
            await backend.stop()
    await _tasks_back_to(before, owned)


async def settled(router: RunningRouter, timeout: float = 3.0) -> None:
    """Wait until the router has nothing in progress: no request, no in-flight count, no stream, no busy
    upstream connection and no client connection left open."""
    app = router.app
    stats: dict[str, int] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                state = app.state
                if state.active_requests == 0 and state.inflight.total() == 0:
                    stats = app.runtime_stats()
                    if stats["streams"] == 0 and stats["client_connections"] == 0 \
                            and stats["upstream_connections"] == stats["upstream_idle_connections"]:
                        return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the router did not settle: active_requests={app.state.active_requests} "
                             f"inflight={app.state.inflight.counts} {stats}") from None


def _backend_tasks(backends: list[Endpoint]) -> Callable[[], set[asyncio.Task]]:
    def owned() -> set[asyncio.Task]:
        return {t for b in backends if isinstance(b, Backend) for t in b.handlers}
    return owned


def _tasks(owned: Callable[[], set[asyncio.Task]]) -> int:
    """Tasks in the loop, the stand-in endpoints' own connection handlers left out."""
    return len(asyncio.all_tasks() - owned())


async def _tasks_back_to(count: int, owned: Callable[[], set[asyncio.Task]], settle: float = 2.0) -> None:
    """Wait a short settle until there are no more tasks than `count`; fail naming the tasks that stayed."""
    try:
        async with asyncio.timeout(settle):
            while _tasks(owned) > count:
                await asyncio.sleep(0.02)
    except TimeoutError:
        names = sorted(t.get_name() + " " + repr(t.get_coro()) for t in asyncio.all_tasks() - owned())
        raise AssertionError(f"{len(names) - count} task(s) left behind; now running: {names}") from None


def error_of(body: bytes) -> dict:
    """The OpenAI-style error object of a router error response or SSE error event, checked for shape."""
    error = orjson.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and isinstance(error["code"], str)
    return error


def events(body: bytes) -> list[bytes]:
    """The `data:` payloads of an event stream."""
    return [block.removeprefix(b"data: ") for block in body.strip().split(b"\n\n") if block]

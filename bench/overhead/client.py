"""The overhead benchmark's own HTTP/1.1 client: asyncio protocols and the llhttp parser, keep-alive pool.

Used for what wrk cannot do: open-loop load (a request goes out at its scheduled time whether or not earlier
ones have finished, on a new connection when none is idle), time to the first SSE event, counting events and
the `[DONE]` marker, and holding a thousand streams open. It runs on CPU 1 next to the fake upstream, so it
does as little per response as it can: no header objects, no body buffering beyond a short tail.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httptools

_DATA = b"data: "
_DONE = b"data: [DONE]\n\n"


class Result:
    """One response: timings from perf_counter, what came back, or why it failed."""

    __slots__ = ("sent", "ttfb", "ttft", "end", "status", "events", "done", "error")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.ttfb = self.ttft = self.end = 0.0
        self.status = 0
        self.events = 0
        self.done = False
        self.error = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.status == 200 and self.end > 0


class _Connection(asyncio.Protocol):
    __slots__ = ("parser", "transport", "waiter", "result", "tail", "reusable", "on_event")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Result] | None = None
        self.result: Result | None = None
        self.tail = b""
        self.reusable = False
        self.on_event = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, sent: float, on_event=None) -> asyncio.Future[Result]:
        self.result = Result(sent)
        self.tail = b""
        self.reusable = False
        self.on_event = on_event
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        result = self.result
        if result is None:
            return
        if not result.ttfb:
            result.ttfb = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"parse: {exc}")

    def on_status(self, _status: bytes) -> None:
        self.result.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        result = self.result
        if not result.ttft:
            result.ttft = time.perf_counter()
        # Count "data: " across read boundaries: a 5-byte tail cannot hold a whole 6-byte match twice.
        found = (self.tail[-5:] + body).count(_DATA)
        if found:
            result.events += found
            if self.on_event is not None:
                self.on_event(self, found)
        self.tail = (self.tail + body)[-16:]

    def on_message_complete(self) -> None:
        result = self.result
        result.end = time.perf_counter()
        result.done = self.tail.endswith(_DONE)
        self.reusable = self.parser.should_keep_alive()
        self._finish("")

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._finish(f"connection lost: {exc or 'closed by peer'}")

    def _finish(self, error: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if error:
                self.result.error = error
                self.reusable = False
            waiter.set_result(self.result)


class Client:
    """Requests to one host:port over a pool of keep-alive connections; opens one more when none is idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[_Connection] = []
        self.all: set[_Connection] = set()

    def request_bytes(self, path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def request(self, request: bytes, sent: float | None = None, on_event=None) -> Result:
        sent = time.perf_counter() if sent is None else sent
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate.transport is not None and not candidate.transport.is_closing():
                conn = candidate
                break
        try:
            if conn is None:
                _, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
                self.all.add(conn)
        except OSError as exc:
            result = Result(sent)
            result.error = f"connect: {exc}"
            return result
        try:
            result = await conn.send(request, sent, on_event)
        except asyncio.CancelledError:
            conn.transport.close()
            raise
        if conn.reusable:
            self.idle.append(conn)
        else:
            conn.transport.close()
            self.all.discard(conn)
        return result

    def close(self) -> None:
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()
        self.all.clear()
        self.idle.clear()

"""HTTP/1.1 client for the router's requests to endpoints: pooled keep-alive connections, llhttp parsing.

The proxy hands over a ready request head and body; `UpstreamClient.send` writes them on an idle pooled
connection to the endpoint (or a new one) and returns once the response head has arrived. The body is then
read piece by piece as it arrives (`UpstreamResponse.read`), with reading paused while the proxy is behind,
and the connection goes back to the pool when the body was read whole.

Failures are typed so the proxy can tell what is safe: `ConnectFailed` means nothing was sent (another
endpoint may be tried), `UpstreamClosed` / `UpstreamTimeout` / `MalformedResponse` mean the endpoint got
the request. A pooled connection the endpoint closed while idle is replaced transparently.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

import httptools

_HIGH_WATER = 256 * 1024  # unread body bytes buffered before reading from the endpoint pauses
_LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """Base of the failures of one upstream exchange."""


class ConnectFailed(UpstreamError):
    """No connection could be made: nothing was sent."""


class UpstreamClosed(UpstreamError):
    """The endpoint closed or reset the connection before the response was complete."""

    def __init__(self, message: str, *, response_started: bool) -> None:
        super().__init__(message)
        self.response_started = response_started


class UpstreamTimeout(UpstreamError):
    """The endpoint was silent for longer than the read timeout."""


class MalformedResponse(UpstreamError):
    """The endpoint's bytes are not a valid HTTP/1.x response."""


class UpstreamResponse:
    """A response whose head has arrived; its body is read with `read()`."""

    __slots__ = ("status", "reason", "version", "headers", "content_length", "chunked", "keep_alive",
                 "_conn", "_chunks", "_buffered", "_complete", "_error", "_waiter", "_released", "_head_only")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.reason = ""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        self._head_only = False

    def header(self, lower_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lower_name:
                return value
        return None

    async def read(self) -> bytes:
        """The body received since the last read (chunked framing removed); b"" at the end.

        Everything buffered comes back at once: when the proxy is behind, several events go to the client
        in one write instead of one write each."""
        while True:
            chunks = self._chunks
            if chunks:
                if len(chunks) == 1:
                    data = chunks.popleft()
                else:
                    data = b"".join(chunks)
                    chunks.clear()
                self._buffered -= len(data)
                conn = self._conn
                if conn.reading_paused and self._buffered < _LOW_WATER:
                    conn.resume_reading()
                return data
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._conn.wait(self)

    def release(self) -> None:
        """Done with the response: its connection is pooled if the body was read whole, else closed."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if self._complete and not self._chunks and self.keep_alive and not self._head_only:
            conn.client._put(conn)
        else:
            conn.close()

    def abort(self) -> None:
        """Close the connection now (the client went away, or the exchange failed)."""
        if self._released:
            return
        self._released = True
        self._conn.close()

    # --- fed by the connection ------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One connection to an endpoint, carrying one exchange at a time."""

    __slots__ = ("client", "key", "transport", "parser", "response", "head_waiter", "closed", "idle_since",
                 "reading_paused", "write_paused", "_drain", "_headers", "_reason", "_response_bytes", "deadline",
                 "timed_out")

    def __init__(self, client: UpstreamClient, key: tuple[str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.head_waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reading_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._response_bytes = 0  # bytes received for the current exchange
        self.deadline = 0.0  # loop time by which the awaited bytes must arrive (0: not waiting)
        self.timed_out = False

    # --- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.client._open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client = self.client
        client._open.discard(self)
        idle = client._idle.get(self.key)
        if idle is not None and self in idle:
            idle.remove(self)
        response = self.response
        if response is not None and not response._complete:
            started = self._response_bytes > 0
            if started and self.head_waiter is None and response.content_length is None \
                    and not response.chunked and response.status:
                response._finish()  # a body delimited by the end of the connection
            else:
                host, port = self.key
                error = UpstreamClosed(
                    f"endpoint {host}:{port} closed the connection "
                    + ("mid-response" if started else "before responding")
                    + (f" ({exc})" if exc else ""), response_started=started)
                response._fail(error)
                self._wake_head()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._response_bytes += len(data)
        response = self.response
        if response is None:  # bytes while idle: the endpoint is confused; do not reuse the connection
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            host, port = self.key
            response._fail(MalformedResponse(f"endpoint {host}:{port} sent a malformed response: "
                                             f"{' '.join(str(exc).split())[:200]}"))
            self._wake_head()
            self.close()

    # --- llhttp callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []
        self._reason = b""

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # an interim response; the real one follows
        response.status = status
        response.reason = self._reason.decode("latin-1")
        response.version = self.parser.get_http_version()
        response.headers = headers = self._headers
        response.keep_alive = self.parser.should_keep_alive()
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                if value.isdigit():
                    response.content_length = int(value)
            elif lowered == b"transfer-encoding":
                response.chunked = b"chunked" in value.lower()
        if response._head_only or status in (204, 304):
            response.content_length = None if response._head_only else 0
            response._finish()
            response.keep_alive = False if response._head_only else response.keep_alive
        self._wake_head()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None and response.status:
            response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status and not response._complete:
            response._finish()

    # --- exchange -------------------------------------------------------------------------------------

    def _wake_head(self) -> None:
        waiter = self.head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def exchange(self, head: bytes, body: bytes, head_only: bool, limit: float) -> UpstreamResponse:
        response = self.response = UpstreamResponse(self)
        response._head_only = head_only
        self._response_bytes = 0
        transport = self.transport
        assert transport is not None
        if body:
            if len(body) < 65536:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
        else:
            transport.write(head)
        if self.write_paused:
            await self.drain()
        client = self.client
        waiter = self.head_waiter = client.loop.create_future()
        self.timed_out = False
        self.deadline = client.loop.time() + limit
        client.watch()
        try:
            await waiter
        except BaseException:
            self.close()
            raise
        finally:
            self.deadline = 0.0
            self.head_waiter = None
        if response.status == 0:
            if response._error is not None:
                raise response._error
            host, port = self.key
            self.close()
            raise UpstreamTimeout(f"endpoint {host}:{port} sent no response within {limit:g}s")
        return response

    def deadline_passed(self) -> None:
        """Called by the client's sweep: the awaited bytes are late."""
        self.deadline = 0.0
        self.timed_out = True
        self._wake_head()
        if self.response is not None:
            self.response._wake()

    async def wait(self, response: UpstreamResponse) -> None:
        """Wait for more of `response`'s body, at most the read timeout."""
        client = self.client
        waiter = response._waiter = client.loop.create_future()
        self.timed_out = False
        self.deadline = client.loop.time() + client.read_timeout
        client.watch()
        try:
            await waiter
        except BaseException:
            self.close()
            raise
        finally:
            self.deadline = 0.0
            response._waiter = None
        if self.timed_out and not response._chunks and not response._complete and response._error is None:
            host, port = self.key
            self.close()
            response._error = UpstreamTimeout(
                f"endpoint {host}:{port} was silent for {self.client.read_timeout:g}s mid-response")

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            drain = self._drain = self.client.loop.create_future()
            await drain

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class UpstreamClient:
    """Keep-alive connections to endpoints, by (host, port)."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, keepalive_per_host: int = 256,
                 idle_timeout: float = 60.0) -> None:
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_per_host = keepalive_per_host
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # Read timeouts are enforced by one periodic sweep over the connections, not a timer per request.
        self._watch_every = max(0.01, min(1.0, read_timeout / 4))
        self._watcher: asyncio.TimerHandle | None = None

    def watch(self) -> None:
        if self._watcher is None:
            self._watcher = self.loop.call_later(self._watch_every, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._watcher = None
        now = self.loop.time()
        waiting = False
        for conn in list(self._open):
            deadline = conn.deadline
            if deadline:
                if deadline <= now:
                    conn.deadline_passed()
                else:
                    waiting = True
        if waiting:
            self.watch()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def send(self, host: str, port: int, head: bytes, body: bytes, *,
                   head_only: bool = False) -> UpstreamResponse:
        key = (host, port)
        conn = self._take(key)
        if conn is not None:
            try:
                return await conn.exchange(head, body, head_only, self.read_timeout)
            except UpstreamClosed as exc:
                if exc.response_started:
                    raise
                # The endpoint closed this idle connection as the request went out: use a fresh one.
        conn = await self._connect(key)
        return await conn.exchange(head, body, head_only, self.read_timeout)

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        host, port = key
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(lambda: _Connection(self, key), host, port)
        except TimeoutError:
            raise ConnectFailed(f"connecting to {host}:{port} timed out after {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn  # type: ignore[return-value]

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        horizon = self.loop.time() - self.idle_timeout
        while idle:
            conn = idle.pop()  # the most recently used: its peer is least likely to have timed it out
            if not conn.closed and conn.idle_since > horizon:
                return conn
            conn.close()
        return None

    def _put(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.response = None
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = collections.deque()
        if len(idle) >= self.keepalive_per_host:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(max(0.05, self.idle_timeout / 2), self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        horizon = self.loop.time() - self.idle_timeout
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= horizon:
                idle.popleft().close()
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweeper = self.loop.call_later(max(0.05, self.idle_timeout / 2), self._sweep)

    def forget_except(self, alive) -> None:
        """Close the idle connections to endpoints not in `alive` ((host, port) pairs); busy ones finish."""
        for key in [key for key in self._idle if key not in alive]:
            for conn in self._idle.pop(key):
                conn.close()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)

    def stats(self) -> dict[str, Any]:
        return {"open": self.open_connections, "idle": self.idle_connections}

"""Client connections of one listener: parsing with llhttp, one handler task per request, and the limits.

`HTTPServer` is the protocol factory handed to `loop.create_server`; it owns the handler, the limits and
the set of open connections. Each `HTTPConnection` parses bytes as they arrive, starts the handler once a
request head is complete (pipelined requests wait their turn with reading paused), buffers the body for
`HTTPRequest.read_body`, and cancels the handler when the client goes away.

Limits, each answered with an OpenAI-style error object and a closed connection: request head size and
header count (431), time to send the head and pauses within the body (408), open connections and
requests in progress per listener (503), malformed HTTP (400). The body size limit is the handler's to
report (413), since it knows whether it needed the body.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate

import httptools

from kthena_router import errors
from kthena_router.http.request import Headers, HTTPRequest, status_line

log = logging.getLogger(__name__)
_dict_get = dict.get

Handler = Callable[[HTTPRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_read_timeout: float = 10.0
    body_read_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 10000
    max_streams: int = 4096


class _HeadTooLarge(Exception):
    def __init__(self, error: errors.RouterError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_response(error: errors.RouterError, date: bytes) -> bytes:
    body = error.body()
    return b"".join((status_line(error.status), date, b"Content-Type: application/json\r\n",
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body), body))


class HTTPServer:
    """The listener-wide part: handler, limits, live connections and requests in progress."""

    def __init__(self, handler: Handler, limits: ServerLimits, *, scheme: str = "http") -> None:
        self.handler = handler
        self.limits = limits
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.connections: set[HTTPConnection] = set()
        self.streams = 0  # requests whose handler is running
        self.tasks: set[asyncio.Task[None]] = set()  # strong references to running handlers
        self.closing = False  # no more keep-alive: connections end after their current response
        self._date = b""
        self._date_second = 0
        self._all_closed: asyncio.Event | None = None
        # One periodic sweep enforces the head and keep-alive timeouts of every connection, instead of a
        # timer armed and cancelled per request.
        self._sweep_every = max(0.01, min(1.0, limits.header_read_timeout / 4, limits.keepalive_timeout / 4))
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> HTTPConnection:
        return HTTPConnection(self)

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    async def shutdown(self, grace: float) -> None:
        """Stop keep-alive, close idle connections, let busy ones finish for up to `grace`, then close."""
        self.closing = True
        for conn in list(self.connections):
            if conn.idle:
                conn.abort()
        if self.connections:
            self._all_closed = asyncio.Event()
            try:
                async with asyncio.timeout(grace):
                    await self._all_closed.wait()
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()

    def watch(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        for conn in list(self.connections):
            deadline = conn.deadline
            if deadline and deadline <= now:
                conn.deadline_passed()
        if self.connections:
            self.watch()

    def connection_closed(self, conn: HTTPConnection) -> None:
        self.connections.discard(conn)
        if self._all_closed is not None and not self.connections:
            self._all_closed.set()


class HTTPConnection(asyncio.Protocol):
    """One client connection (HTTP/1.0 and 1.1, keep-alive, pipelining, Expect: 100-continue)."""

    __slots__ = (
        "server", "limits", "loop", "transport", "remote", "parser", "closed", "write_paused", "_drain",
        "_url", "_raw", "_headers", "_head_bytes", "_parsing", "_current", "_task", "_queue",
        "_reading_paused", "_eof", "_in_head", "_fatal", "deadline", "_head_limit", "_last", "_raw_left",
    )

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._url: list[bytes] = []
        self._raw: list[tuple[bytes, bytes]] = []
        self._headers: Headers | None = None
        self._head_bytes = 0
        self._head_limit = server.limits.max_header_bytes
        self._last: HTTPRequest | None = None  # the request whose head was parsed last
        self._raw_left = -1  # after a declined Upgrade: body bytes still to take without the parser
        self._parsing: HTTPRequest | None = None  # the request whose body is being received
        self._current: HTTPRequest | None = None  # the request whose handler runs
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[HTTPRequest] = collections.deque()
        self.deadline = 0.0  # loop time by which the head must be complete (or an idle connection closes)
        self._reading_paused = False
        self._eof = False
        self._in_head = False
        self._fatal: errors.RouterError | None = None  # a parse error behind the running request

    # --- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else ""
        server = self.server
        server.connections.add(self)
        if len(server.connections) > self.limits.max_connections or server.closing:
            error = errors.ListenerBusy(f"the listener holds its limit of {self.limits.max_connections} "
                                        "connections" if not server.closing else "the router is shutting down")
            transport.write(_error_response(error, server.date_line()))  # type: ignore[attr-defined]
            self.abort(flush=True)
            return
        self.deadline = self.loop.time() + self.limits.header_read_timeout
        server.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connection_closed(self)
        self.deadline = 0.0
        task = self._task
        current = self._current
        if task is not None and current is not None and not current.finished and not task.done():
            task.cancel()
        if self._parsing is not None:
            self._parsing._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the client closed the connection"))
        self._queue.clear()

    def eof_received(self) -> bool:
        # Like nginx, a client's end of stream counts as leaving: the request in progress is cancelled (and
        # with it the upstream request) rather than kept for a half-closed socket that rarely still reads.
        self._eof = True
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._raw_left >= 0:
            self._raw_body(data)
            return
        if self._current is None and not self._in_head:
            # First bytes of a new request: the keep-alive wait ends, the head must now arrive in time.
            self.deadline = self.loop.time() + self.limits.header_read_timeout
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            error = cause.error if isinstance(cause, _HeadTooLarge) else \
                errors.MalformedHTTP("malformed HTTP request")
            self._protocol_error(error)
        except httptools.HttpParserUpgrade as exc:
            self._decline_upgrade(data[exc.args[0] if exc.args else len(data):])
        except httptools.HttpParserError as exc:
            reason = " ".join(str(exc).split())[:200] or "malformed request"
            log.debug("malformed HTTP request from %s: %s", self.remote, reason)
            self._protocol_error(errors.MalformedHTTP(f"malformed HTTP request: {reason}"))

    # --- llhttp callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = []
        self._raw = []
        self._headers = Headers(self._raw)
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            raise _HeadTooLarge(errors.HeadersTooLarge(
                f"the request line exceeds the limit of {self.limits.max_header_bytes} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        if size > self._head_limit:
            raise _HeadTooLarge(self._head_error())

    def _head_error(self) -> errors.RouterError:
        if len(self._raw) > self.limits.max_headers:
            return errors.HeadersTooLarge(f"the request has more than {self.limits.max_headers} header lines")
        return errors.HeadersTooLarge(f"the request head exceeds the limit of {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.deadline = 0.0
        parser = self.parser
        url = self._url
        target = (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1")
        headers = self._headers
        assert headers is not None
        raw = self._raw
        if len(raw) > self.limits.max_headers:
            raise _HeadTooLarge(self._head_error())
        setdefault = headers.setdefault
        hosts = 0
        for name, value in raw:
            key = name.decode("latin-1").lower()
            if key == "host":
                hosts += 1
            setdefault(key, value.decode("latin-1"))
        version = parser.get_http_version()
        if hosts != 1 and version == "1.1":  # RFC 9112 3.2: exactly one, or the request is refused
            raise _HeadTooLarge(errors.MalformedHTTP("a request of HTTP version 1.1 needs exactly one Host header"))
        self._raw = []  # trailer fields after a chunked body land here and go nowhere
        if not target.startswith("/"):
            target = self._origin_form(target, headers)
        request = HTTPRequest(self, parser.get_method().decode("ascii"), target, version,
                              headers, parser.should_keep_alive(), self.limits.max_body_bytes)
        self._parsing = self._last = request
        if self._current is None:
            self._start(request)
        else:
            self._queue.append(request)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is not None:
            request._feed(body)

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is not None:
            self._parsing = None
            request._done()

    # --- requests -------------------------------------------------------------------------------------

    @staticmethod
    def _origin_form(target: str, headers: Headers) -> str:
        """Absolute-form targets (`http://host/path`) become origin-form; their host replaces `Host`."""
        if target == "*":
            return target
        try:
            parsed = httptools.parse_url(target.encode("latin-1"))
        except httptools.HttpParserInvalidURLError:
            return "/" + target
        if parsed.host:
            host = parsed.host.decode("latin-1")
            if parsed.port:
                host = f"{host}:{parsed.port}"
            dict.__setitem__(headers, "host", host)
        path = (parsed.path or b"/").decode("latin-1")
        if parsed.query:
            path += "?" + parsed.query.decode("latin-1")
        return path

    def _start(self, request: HTTPRequest) -> None:
        self._current = request
        server = self.server
        if server.streams >= self.limits.max_streams:
            request.keep_alive = False
            request.respond(*_error_args(errors.ListenerBusy(
                f"the listener has its limit of {self.limits.max_streams} requests in progress")))
            return
        server.streams += 1
        task = self._task = self.loop.create_task(self._run(request))
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    async def _run(self, request: HTTPRequest) -> None:
        try:
            await self.server.handler(request)
        except asyncio.CancelledError:
            pass
        except errors.RouterError as error:
            if not request.response_started and not self.closed:
                if not request.body_complete:
                    request.keep_alive = False
                request.respond(*_error_args(error))
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            if not request.response_started and not self.closed:
                request.keep_alive = False
                request.respond(*_error_args(errors.RouterError("internal error")))
        finally:
            self.server.streams -= 1
            if not request.finished and not self.closed:
                if request.response_started:
                    self.abort()
                else:
                    request.keep_alive = False
                    request.respond(*_error_args(errors.RouterError("the request ended without a response")))

    def response_done(self, request: HTTPRequest) -> None:
        """Called when a response is complete: go on with the next request, or close."""
        if request is not self._current:
            return
        self._current = None
        self._task = None
        if self.closed:
            return
        if not request.keep_alive or self._eof or self.server.closing:
            self.abort(flush=True)
            return
        if self._queue:
            self._start(self._queue.popleft())
            return
        if self._fatal is not None:
            self.transport.write(_error_response(self._fatal, self.server.date_line()))  # type: ignore[union-attr]
            self.abort(flush=True)
            return
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if not self._in_head:
            self.deadline = self.loop.time() + self.limits.keepalive_timeout

    def _decline_upgrade(self, rest: bytes) -> None:
        """An Upgrade offer (h2c, websocket) is declined by answering in HTTP/1.1 and closing.

        llhttp ends the message at the head of an upgrade request and leaves the body unparsed, so a
        Content-Length body is taken here as raw bytes; nothing after it is read as another request."""
        request = self._last
        self._raw_left = 0
        self._pause_reading()
        if request is None:
            return
        request.keep_alive = False
        if _dict_get(request.headers, "transfer-encoding"):
            request._complete = False
            request._fail(errors.MalformedHTTP("a chunked body with an Upgrade offer is not supported"))
            return
        length = request.content_length or 0
        if length:
            request._complete = False
            self._parsing = request
            self._raw_left = length
            self._resume_reading()
            self._raw_body(rest)

    def _raw_body(self, data: bytes) -> None:
        request = self._parsing
        left = self._raw_left
        if request is None or left <= 0:
            return  # bytes after a declined upgrade: ignored; the connection closes after the response
        piece = data[:left]
        self._raw_left = left - len(piece)
        request._feed(piece)
        if self._raw_left == 0:
            self._parsing = None
            request._done()
            self._pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _protocol_error(self, error: errors.RouterError) -> None:
        """Bad bytes from the client: answer (now or after the running response) and close."""
        self._in_head = False
        self._pause_reading()
        parsing = self._parsing
        if parsing is not None and parsing is self._current and not parsing.body_complete:
            parsing._fail(error)  # the handler is waiting for this body: it answers with the error
            parsing.keep_alive = False
            return
        if self._current is not None:
            self._fatal = error
            return
        self.transport.write(_error_response(error, self.server.date_line()))  # type: ignore[union-attr]
        self.abort(flush=True)

    def deadline_passed(self) -> None:
        self.deadline = 0.0
        if self.closed or self._current is not None:
            return
        if self._in_head:
            error = errors.ClientTimeout(f"the request head did not arrive within "
                                         f"{self.limits.header_read_timeout:g}s")
            self.transport.write(_error_response(error, self.server.date_line()))  # type: ignore[union-attr]
        self.abort(flush=True)

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    # --- writing --------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self._current is None and not self._in_head

    @property
    def closing(self) -> bool:
        return self.server.closing or self._eof

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, parts) -> None:
        if not self.closed:
            self.transport.writelines(parts)  # type: ignore[union-attr]

    async def drain(self) -> None:
        if not self.write_paused:
            return
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        drain = self._drain
        if drain is None or drain.done():
            drain = self._drain = self.loop.create_future()
        await drain

    def abort(self, *, flush: bool = False) -> None:
        """Close the connection: after what is buffered when `flush`, else at once."""
        if self.closed:
            return
        transport = self.transport
        if transport is None:
            return
        if flush:
            transport.close()
        else:
            transport.abort()
        self.closed = True
        self.deadline = 0.0


def _error_args(error: errors.RouterError) -> tuple[int, bytes]:
    return error.status, error.body()

"""One keep-alive connection to an endpoint (an asyncio.Protocol fed to llhttp) and the response it carries.

A connection carries one exchange at a time: `exchange()` writes a request and waits for the response head;
the body then lands in the `UpstreamResponse`'s buffer as llhttp hands it over, and `read()` takes it from
there. The pool, the timeout sweep and the retry policy live in `client.py`; this module never decides
whether a request is sent again, and never waits on anything but its own connection.

Hot-path notes: parser callbacks are only the ones needed (llhttp skips the absent ones); waiting is one
future at a time, stored in `waiter` so that "waiting" and "its deadline applies" are the same fact;
timeouts are checked by the client's sweep, not by a timer per wait.
"""

from __future__ import annotations

import asyncio
import http
import socket
from typing import TYPE_CHECKING

import httptools

from kthena_router.upstream.errors import MalformedResponse, UpstreamClosed, UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from kthena_router.upstream.client import UpstreamClient

HIGH_WATER = 256 * 1024  # unread body bytes at which reading from the endpoint pauses
LOW_WATER = 64 * 1024  # ...and below which it resumes

# Connection states.
BUSY = 0  # carrying an exchange, or being connected
IDLE = 1  # in the pool
CLOSED = 2  # gone from every count; the transport is closed or closing

_SMALL_BODY = 16 * 1024  # bodies up to this size are joined to the head in one write
_REASONS = {status.phrase.encode(): status.phrase for status in http.HTTPStatus}  # decoded once


class UpstreamResponse:
    """A response whose head has arrived; its body is read with `read()`, then `release()` or `abort()`."""

    __slots__ = ("status", "reason", "version", "headers", "content_length", "chunked", "keep_alive",
                 "_conn", "_body", "_buffered", "_done", "_error")

    def __init__(self, conn: Connection) -> None:
        self._conn: Connection | None = conn
        self.status = 0
        self.reason = ""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = False
        self._body: list[bytes] = []
        self._buffered = 0
        self._done = False  # the whole body has been received
        self._error: UpstreamError | None = None

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.reason!r}>"

    def header(self, lower_name: bytes) -> bytes | None:
        """The first value of the header named `lower_name` (given in lower case), or None."""
        size = len(lower_name)
        for name, value in self.headers:
            if len(name) == size and name.lower() == lower_name:
                return value
        return None

    async def read(self) -> bytes:
        """The body received since the last call (chunked framing removed), waiting for some if none; b"" at the end.

        Buffered bytes are returned without suspending. Raises UpstreamClosed, UpstreamTimeout or
        MalformedResponse once the buffered bytes are used up.
        """
        while True:
            body = self._body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                conn = self._conn
                if conn is not None and conn.reading_paused:
                    conn.resume_reading()
                return data
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            conn = self._conn
            if conn is None:
                raise UpstreamClosed("the response was released before its body was read",
                                     response_started=True)
            waiter = conn.arm()
            try:
                await waiter
            except BaseException:
                conn.waiter = None
                self.abort()
                raise

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool when the body came whole and the
        endpoint keeps the connection alive; otherwise it is closed. Idempotent."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self._done and self.keep_alive and conn.state == BUSY:
            conn.client._put(conn)
        else:
            conn.close()

    def abort(self) -> None:
        """Close the connection now, whatever the state of the body. Idempotent."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.close()


class Connection(asyncio.Protocol):
    """One connection to an endpoint, carrying one exchange at a time."""

    __slots__ = ("client", "key", "transport", "parser", "state", "response", "waiter", "wait_tick",
                 "idle_tick", "received", "eof", "head_only", "reading_paused", "writing_paused",
                 "reparse", "_headers", "_reason")

    def __init__(self, client: UpstreamClient, key: tuple[str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.state = BUSY
        self.response: UpstreamResponse | None = None
        self.waiter: asyncio.Future[None] | None = None  # set while a coroutine waits on this connection
        self.wait_tick = 0  # the client's read tick when the wait began
        self.idle_tick = 0  # the client's idle tick when the connection was pooled
        self.received = False  # some byte of the current response has arrived
        self.eof = False
        self.head_only = False
        self.reading_paused = False
        self.writing_paused = False
        self.reparse = False  # the parser may be mid-message (a HEAD response): replace it before reuse
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""

    def __repr__(self) -> str:
        return f"<upstream connection {self.key[0]}:{self.key[1]} state={self.state}>"

    # --- exchange ---------------------------------------------------------------------------------------

    def start(self, head: bytes, body: bytes, head_only: bool) -> UpstreamResponse:
        """Write one request; the returned response fills in as the endpoint answers (see `exchange`)."""
        response = self.response = UpstreamResponse(self)
        self.head_only = head_only
        self.received = False
        transport = self.transport
        try:
            if not body:
                transport.write(head)  # type: ignore[union-attr]
            elif len(body) <= _SMALL_BODY:
                transport.write(head + body)  # type: ignore[union-attr]
            else:
                transport.writelines((head, body))  # type: ignore[union-attr]
        except (RuntimeError, OSError) as exc:  # the transport was already closing
            self.close(UpstreamClosed(f"{self.name} closed the connection before the request was sent "
                                      f"({exc})", response_started=False))
        return response

    async def exchange(self, head: bytes, body: bytes, head_only: bool) -> UpstreamResponse:
        """Write one request and return its response once the head (past any 1xx) has arrived.

        `UpstreamClient.send` inlines this for pooled connections (one coroutine less per request); keep
        the two in step.
        """
        response = self.start(head, body, head_only)
        try:
            # One loop for both waits: the body draining to the endpoint (woken by resume_writing) and the
            # response head (woken by on_headers_complete); an early head ends the drain wait too.
            while response.status == 0 and response._error is None:
                await self.arm()
        except BaseException:
            self.waiter = None
            self.close()
            raise
        if response.status == 0:
            raise response._error  # type: ignore[misc]
        return response

    def arm(self) -> asyncio.Future[None]:
        """A future woken by the next event on this connection, with the read timeout running."""
        client = self.client
        waiter = self.waiter = client.loop.create_future()
        self.wait_tick = client.read_tick
        if client.read_ticker is None:
            client.start_read_ticker()
        return waiter

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def timed_out(self) -> None:
        """Called by the client's sweep: the current wait outlived the read timeout."""
        response = self.response
        phase = "no response head" if response is None or not response.status else "no response bytes"
        self.close(UpstreamTimeout(f"{self.name} sent {phase} for {self.client.read_timeout:g}s"))

    @property
    def name(self) -> str:
        return f"endpoint {self.key[0]}:{self.key[1]}"

    # --- closing ----------------------------------------------------------------------------------------

    def close(self, error: UpstreamError | None = None) -> None:
        """Close now; an unfinished response fails with `error` (or a plain "closed") and its waiter wakes."""
        if self.state == CLOSED:
            return
        self._detach()
        response = self.response
        if response is not None:
            self.response = None
            if not response._done and response._error is None:
                response._error = error or UpstreamClosed(f"the connection to {self.name} was closed",
                                                          response_started=self.received)
        self.wake()
        if self.transport is not None:
            self.transport.abort()

    def _detach(self) -> None:
        """Leave the pool and the open count at once, so counts never wait for the transport to go."""
        if self.state == IDLE:
            self.client._unpool(self)
        self.state = CLOSED
        self.client.open.discard(self)

    # --- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.state == CLOSED:  # the connect was given up (cancelled, timed out) before it completed
            transport.abort()  # type: ignore[attr-defined]
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.client.open.add(self)

    def eof_received(self) -> bool:
        self.eof = True
        if self.state == IDLE:  # the endpoint closed a pooled connection: out of the pool at once
            self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSED:
            self._detach()
            response = self.response
            self.response = None
            if response is not None and not response._done and response._error is None:
                if exc is None and self.eof and response.status and response.content_length is None \
                        and not response.chunked:
                    response._done = True  # a body delimited by the end of the connection
                    response.keep_alive = False
                else:
                    started = self.received
                    where = "mid-response" if response.status else ("mid-head" if started else "before responding")
                    reason = f" ({exc})" if exc is not None else ""
                    response._error = UpstreamClosed(f"{self.name} closed the connection {where}{reason}",
                                                     response_started=started)
        self.wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.wake()

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes on an idle connection: the endpoint is confused; never reuse it
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._malformed("switched protocols unasked")
        except httptools.HttpParserError as exc:
            self._malformed(" ".join(str(exc).split())[:200] or type(exc).__name__)

    def _malformed(self, detail: str) -> None:
        self.close(MalformedResponse(f"{self.name} sent a malformed response: {detail}"))

    def pause_reading(self) -> None:
        if not self.reading_paused and self.state != CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self.reading_paused and self.state != CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    # --- llhttp callbacks -------------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:  # an interim response; the real one follows
            self._headers = []
            self._reason = b""
            return
        if response is None or response.status:  # a second response to one request: never reuse
            self._headers = []
            self._reason = b""
            if response is not None:
                response.keep_alive = False
            return
        headers = response.headers = self._headers
        self._headers = []
        said_connection = False
        for name, value in headers:
            size = len(name)
            if size == 14:
                if name.lower() == b"content-length":
                    response.content_length = int(value)
            elif size == 17:
                if name.lower() == b"transfer-encoding":
                    response.chunked = b"chunked" in value.lower()
            elif size == 10 and name.lower() == b"connection":
                said_connection = True
        reason = self._reason
        response.reason = _REASONS.get(reason) or reason.decode("latin-1")
        self._reason = b""
        keep_alive = response.keep_alive = parser.should_keep_alive()
        # Kept alive without a Connection header means HTTP/1.1 (1.0 needs "keep-alive"): skip formatting it.
        response.version = "1.1" if keep_alive and not said_connection else parser.get_http_version()
        response.status = status
        if self.head_only:  # llhttp cannot be told; the body a Content-Length announces never comes
            response._done = True
            self.reparse = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None or response._done:
            return
        response._body.append(body)
        response._buffered += len(body)
        if response._buffered > HIGH_WATER:
            self.pause_reading()
        if self.waiter is not None:
            self.wake()

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or not response.status or response._done:
            return  # an interim response, or one after the end
        response._done = True
        if self.waiter is not None:
            self.wake()

"""One request on a client connection: its parsed head, its body as it arrives, and its response.

The handler reads the head fields, awaits `read_body()` once, then answers with `respond()` (a complete
response) or `start()` + `send()`... + `finish()` (a streamed one). Framing (Content-Length, chunked or
close-delimited) and keep-alive are decided here, so the handler only passes header lines through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from kthena_router import errors

if TYPE_CHECKING:
    from kthena_router.http.server import HTTPConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"
_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 499: "Client Closed Request",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int, reason: str | None = None) -> bytes:
    """`HTTP/1.1 <status> <reason>\\r\\n`, cached for the standard reasons."""
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        return line
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1", "replace")


def header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialize header pairs; CR and LF in names or values are dropped so nothing can be injected."""
    out = []
    for name, value in headers:
        if "\r" in value or "\n" in value:
            value = value.replace("\r", "").replace("\n", "")
        if "\r" in name or "\n" in name or ":" in name:
            continue
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("latin-1", "replace")


_get = dict.get


class Headers(dict):
    """Request headers by lower-case name (first value), with the raw lines kept in order for forwarding.

    `get` and `in` take any case; code on the hot path calls `dict.get` with a lower-case name instead.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__()
        self.raw: list[tuple[bytes, bytes]] = raw if raw is not None else []

    def get(self, name: str, default=None):  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def getall(self, name: str, default=None) -> list[str]:
        wanted = name.lower().encode("latin-1")
        values = [value.decode("latin-1") for key, value in self.raw if key.lower() == wanted]
        if not values and default is not None:
            return default
        return values

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        headers = cls()
        for name, value in pairs:
            headers.raw.append((name.encode("latin-1"), value.encode("latin-1")))
            dict.setdefault(headers, name.lower(), value)
        return headers


class Query:
    """Query parameters, parsed only when a route rule asks for one (first value per name)."""

    __slots__ = ("_text", "_values")

    def __init__(self, text: str) -> None:
        self._text = text
        self._values: dict[str, str] | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values
        if values is None:
            values = self._values = {}
            for key, value in parse_qsl(self._text, keep_blank_values=True):
                values.setdefault(key, value)
        return values.get(name, default)


def normalize_path(raw: str) -> str:
    """Remove `.` and `..` segments (RFC 3986 5.2.4) so routing and the endpoint see the same path."""
    segments = raw.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


class HTTPRequest:
    """A parsed request head plus the state of its body and of its response."""

    __slots__ = (
        "method", "raw_path", "path", "query_string", "version", "headers", "remote", "scheme", "keep_alive",
        "_conn", "_chunks", "_size", "_complete", "_error", "_waiter", "_continue_sent", "_limit",
        "response_started", "finished", "status", "_chunked", "_no_body", "_query",
    )

    def __init__(self, conn: HTTPConnection, method: str, target: str, version: str, headers: Headers,
                 keep_alive: bool, limit: int) -> None:
        self._conn = conn
        self.method = method
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.remote = conn.remote
        self.scheme = conn.server.scheme
        question = target.find("?")
        if question >= 0:
            raw_path, self.query_string = target[:question], target[question + 1:]
        else:
            raw_path, self.query_string = target, ""
        if "/." in raw_path:
            raw_path = normalize_path(raw_path)
        self.raw_path = raw_path
        self.path = unquote(raw_path) if "%" in raw_path else raw_path
        self._chunks: list[bytes] = []
        self._size = 0
        self._complete = False
        self._error: errors.RouterError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._continue_sent = False
        self._limit = limit
        self._query: Query | None = None
        self.response_started = False
        self.finished = False
        self.status = 0
        self._chunked = False
        self._no_body = method == "HEAD"

    # --- head -----------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return _get(self.headers, "host", "")

    @property
    def content_type(self) -> str:
        value = _get(self.headers, "content-type")
        if not value:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        value = _get(self.headers, "content-length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def query(self) -> Query:
        query = self._query
        if query is None:
            query = self._query = Query(self.query_string)
        return query

    @property
    def body_complete(self) -> bool:
        return self._complete

    # --- body -----------------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        size = self._size + len(data)
        self._size = size
        if size > self._limit:
            if self._error is None:
                self._error = errors.BodyTooLarge(f"request body exceeds the limit of {self._limit} bytes")
                self._chunks.clear()
        elif self._error is None:
            self._chunks.append(data)
        self._wake()

    def _done(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: errors.RouterError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read_body(self) -> bytes:
        """The whole body (chunked framing removed). Raises BodyTooLarge, BadRequest or ClientTimeout."""
        length = self.content_length
        if length is not None and length > self._limit:
            raise errors.BodyTooLarge(f"request body of {length} bytes exceeds the limit of {self._limit} bytes")
        conn = self._conn
        while not self._complete and self._error is None:
            if conn.closed:
                raise ConnectionResetError("the client closed the connection while sending the body")
            if not self._continue_sent:
                self._continue_sent = True
                expect = self.headers.get("expect")
                if expect is not None and expect.lower() == "100-continue" and self.version == "1.1":
                    conn.transport.write(_CONTINUE)  # type: ignore[union-attr]
            loop = conn.loop
            waiter = self._waiter = loop.create_future()
            size = self._size
            timer = loop.call_later(conn.limits.body_read_timeout, self._wake)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if self._size == size and not self._complete and self._error is None and not conn.closed:
                self._error = errors.ClientTimeout(
                    f"the request body stalled for more than {conn.limits.body_read_timeout:g}s")
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    # --- response -------------------------------------------------------------------------------------

    def respond(self, status: int, body: bytes = b"", headers: bytes = b"", *,
                content_type: bytes = b"application/json", reason: str | None = None) -> None:
        """Send a complete response; `headers` are extra serialized lines (see `header_lines`)."""
        if self.response_started:
            raise RuntimeError("the response has already started")
        self.response_started = True
        self.status = status
        conn = self._conn
        keep = self.keep_alive and self._complete and not conn.closing
        parts = [status_line(status, reason), conn.server.date_line()]
        if body or status not in (204, 304):
            if content_type:
                parts.append(b"Content-Type: " + content_type + _CRLF)
            parts.append(b"Content-Length: %d\r\n" % len(body))
        if headers:
            parts.append(headers)
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif self.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(_CRLF)
        if body and not self._no_body:
            parts.append(body)
        self.keep_alive = keep
        conn.write(b"".join(parts))
        self.finished = True
        conn.response_done(self)

    def start(self, status: int, reason: str | None, headers: bytes, content_length: int | None,
              body: bytes = b"") -> None:
        """Send the response head (and optionally the first body bytes). Without a length the body is
        chunked (HTTP/1.1) or ends when the connection closes (HTTP/1.0)."""
        if self.response_started:
            raise RuntimeError("the response has already started")
        self.response_started = True
        self.status = status
        conn = self._conn
        keep = self.keep_alive and self._complete and not conn.closing
        parts = [status_line(status, reason), headers]
        no_body = self._no_body or status in (204, 304) or status < 200
        if content_length is not None:
            if not no_body or self._no_body:
                parts.append(b"Content-Length: %d\r\n" % content_length)
        elif not no_body:
            if self.version == "1.1":
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self._chunked = True
            else:
                keep = False
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif self.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(_CRLF)
        self.keep_alive = keep
        self._no_body = no_body
        if body and not no_body:
            if self._chunked:
                parts.append(b"%x\r\n" % len(body))
                parts.append(body)
                parts.append(_CRLF)
            else:
                parts.append(body)
        conn.write(b"".join(parts))

    async def send(self, data: bytes) -> None:
        """Write body bytes, waiting while the client is slow to read."""
        conn = self._conn
        if conn.closed:
            raise ConnectionResetError("the client closed the connection")
        if data and not self._no_body:
            if self._chunked:
                conn.writelines((b"%x\r\n" % len(data), data, _CRLF))
            else:
                conn.write(data)
        if conn.write_paused:
            await conn.drain()

    def finish(self, data: bytes = b"") -> None:
        """End the response (with optional last bytes); the connection moves on to the next request."""
        if self.finished:
            return
        conn = self._conn
        if not self._no_body:
            if self._chunked:
                if data:
                    conn.writelines((b"%x\r\n" % len(data), data, _CRLF, _LAST_CHUNK))
                else:
                    conn.write(_LAST_CHUNK)
            elif data:
                conn.write(data)
        self.finished = True
        conn.response_done(self)

    def abort(self) -> None:
        """Cut the connection (a response that cannot be completed)."""
        self.finished = True
        self.keep_alive = False
        self._conn.abort()

    @property
    def client_gone(self) -> bool:
        return self._conn.closed

"""The access log: one line per finished request, in kthena's text layout or as JSON.

The proxy calls `log` once per request with its `RequestRecord`, after the response is finished; the caller
decides which requests get a line. `log` only formats the line and appends it to a buffer; a named background
task writes the buffer every `flush_interval` seconds, or sooner once `flush_lines` lines wait, in a worker
thread so a slow stdout pipe or disk never stalls the event loop. `close` writes whatever is left.

Text layout (kthena's `formatText`, plus `selected_endpoint`)::

    [2025-01-02T03:04:05.123Z] "POST /v1/chat/completions HTTP/1.1" 200 model_name=llama
    selected_pod=ns/llama-0 request_id=r1 backend_type=inference_pool backend_name=ns/pool
    upstream_status_code=200 upstream_attempts=1 gateway=ns/gw http_route=ns/route inference_pool=ns/pool
    selected_endpoint=10.0.0.1:8000 tokens=12/34 timings=512.3ms(0.4+511.7+0.2)

(one line; wrapped here). Optional fields are left out when empty or zero. The timestamp is the request's
arrival, UTC, with milliseconds. The JSON layout has one object per line with kthena's field names, in the
same order, also leaving out empty fields (`model_name` is always there).

Timings are milliseconds with one decimal, where kthena writes whole milliseconds: the router's own share of a
request is well under a millisecond and would always read 0. `total` runs from arrival to the end of the
response; `request` from arrival to the routing decision; `upstream` from the first upstream send to the end
of the upstream body; `response` is the rest (total - request - upstream): writing the reply, plus the short
hand-off between routing and the first upstream send. The three add up to `total`.

Client-supplied values (path, model, request id, error messages) are escaped so that no client can break a
line or forge a field. In the text layout a value with a space, quote, backslash or non-printable character
is written in double quotes with backslash escapes (`\\n`, `\\"`, `\\x1b`, `\\u2028`, ...), and spaces in the
path become `%20`. orjson escapes the JSON layout; the Unicode line breaks it leaves raw (U+0085, U+2028,
U+2029) get `\\u` escapes too. Fields the router sets itself (protocol, gateway, route, pool, pod, endpoint)
are validated Kubernetes names or `ip:port` and are written as they are. Request headers are never logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import BinaryIO, Literal

import orjson

from kthena_router.record import RequestRecord

log = logging.getLogger(__name__)

Format = Literal["text", "json"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(value: str) -> str:
    """Backslash-escape quotes, backslashes and every non-printable character (Python's `isprintable`, which
    also rejects line and paragraph separators, format characters such as bidi overrides, and lone
    surrogates)."""
    out = []
    for ch in value:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return "".join(out)


def _value(value: str) -> str:
    """A `key=value` value: as is when plain, else quoted and escaped."""
    if value.isprintable() and " " not in value and '"' not in value and "\\" not in value:
        return value
    return '"' + _escape(value) + '"'


def _quoted(value: str) -> str:
    """A part of the quoted request line: escaped, spaces as %20 so the line still splits in three."""
    if value.isprintable() and " " not in value and '"' not in value and "\\" not in value:
        return value
    return _escape(value).replace(" ", "%20")


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def timestamp(wall: float) -> str:
    """RFC 3339, UTC, milliseconds: `2025-01-02T03:04:05.123Z`."""
    seconds = int(wall)
    return _second(seconds) + _MILLIS[int((wall - seconds) * 1000)]


def _timings(rec: RequestRecord) -> tuple[float, float, float, float]:
    """(total, request, upstream, response) in milliseconds with one decimal; see the module docstring."""
    end = rec.t_end or time.perf_counter()
    start = rec.start
    # Counted in tenths of a millisecond, so the rounded parts add up to the rounded total.
    total = round((end - start) * 10_000)
    request = round(((rec.t_routed or end) - start) * 10_000)
    upstream = 0
    if rec.t_upstream_start:
        upstream = round(((rec.t_upstream_end or end) - rec.t_upstream_start) * 10_000)
    response = max(total - request - upstream, 0)
    return total / 10, request / 10, upstream / 10, response / 10


def format_text(rec: RequestRecord) -> str:
    """One line in kthena's text layout, without the newline."""
    # Escaped: method, path, model, request id, error. The rest are the router's own values.
    parts = [
        f'[{timestamp(rec.start_wall)}] "{_quoted(rec.method)} {_quoted(rec.path)} {rec.protocol}" '
        f"{rec.status_code}"
    ]
    add = parts.append
    if rec.error_type or rec.error_message:
        add(" error=" + _value(f"{rec.error_type}:{rec.error_message}"))
    if rec.model:
        add(" model_name=" + _value(rec.model))
    if rec.selected_pod:
        add(" selected_pod=" + rec.selected_pod)
    if rec.request_id:
        add(" request_id=" + _value(rec.request_id))
    pool = rec.inference_pool
    if pool:
        add(" backend_type=inference_pool backend_name=" + pool)
    if rec.upstream_status_code:
        add(f" upstream_status_code={rec.upstream_status_code}")
    if rec.upstream_attempts:
        add(f" upstream_attempts={rec.upstream_attempts}")
    if rec.gateway:
        add(" gateway=" + rec.gateway)
    if rec.http_route:
        add(" http_route=" + rec.http_route)
    if pool:
        add(" inference_pool=" + pool)
    if rec.selected_endpoint:
        add(" selected_endpoint=" + rec.selected_endpoint)
    if rec.input_tokens or rec.output_tokens:
        add(f" tokens={rec.input_tokens}/{rec.output_tokens}")
    total, request, upstream, response = _timings(rec)
    add(f" timings={total:.1f}ms({request:.1f}+{upstream:.1f}+{response:.1f})")
    return "".join(parts)


def format_json(rec: RequestRecord) -> str:
    """One JSON object with kthena's field names, without the newline."""
    entry: dict[str, object] = {
        "timestamp": timestamp(rec.start_wall),
        "method": rec.method,
        "path": rec.path,
        "protocol": rec.protocol,
        "status_code": rec.status_code,
    }
    if rec.error_type or rec.error_message:
        entry["error"] = {"type": rec.error_type, "message": rec.error_message}
    entry["model_name"] = rec.model
    if rec.selected_pod:
        entry["selected_pod"] = rec.selected_pod
    if rec.selected_endpoint:
        entry["selected_endpoint"] = rec.selected_endpoint
    if rec.request_id:
        entry["request_id"] = rec.request_id
    pool = rec.inference_pool
    if pool:
        entry["backend_type"] = "inference_pool"
        entry["backend_name"] = pool
    if rec.upstream_status_code:
        entry["upstream_status_code"] = rec.upstream_status_code
    if rec.upstream_attempts:
        entry["upstream_attempts"] = rec.upstream_attempts
    if rec.gateway:
        entry["gateway"] = rec.gateway
    if rec.http_route:
        entry["http_route"] = rec.http_route
    if pool:
        entry["inference_pool"] = pool
    if rec.input_tokens:
        entry["input_tokens"] = rec.input_tokens
    if rec.output_tokens:
        entry["output_tokens"] = rec.output_tokens
    total, request, upstream, response = _timings(rec)
    entry["duration_total"] = total
    entry["duration_request_processing"] = request
    entry["duration_upstream_processing"] = upstream
    entry["duration_response_processing"] = response
    if rec.stream and rec.t_first_token:
        entry["ttft_ms"] = round((rec.t_first_token - rec.start) * 10_000) / 10
    # Decoded at once: a buffer of str costs less than one of orjson's bytes objects kept alive (measured
    # 3.9 vs 7.7 us a line), and the batch is encoded in one go when written.
    line = orjson.dumps(entry).decode()
    if not line.isascii():
        # Valid JSON keeps these raw, but readers that split on Unicode line breaks would cut the line there.
        line = line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return line


class AccessLog:
    """Buffers formatted lines and writes them from a background task; see the module docstring."""

    def __init__(self, *, enabled: bool = True, fmt: Format = "text", output: str = "stdout",
                 flush_interval: float = 0.1, flush_lines: int = 256,
                 max_buffered_lines: int = 100_000) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be 'text' or 'json', got {fmt!r}")
        if not output:
            raise ValueError("access log output must be 'stdout', 'stderr' or a file path")
        if flush_interval <= 0 or flush_lines < 1 or max_buffered_lines < flush_lines:
            raise ValueError("access log needs flush_interval > 0 and 1 <= flush_lines <= max_buffered_lines")
        self.enabled = enabled
        self.fmt = fmt
        self.output = output
        self._format: Callable[[RequestRecord], str] = format_text if fmt == "text" else format_json
        self._flush_interval = flush_interval
        self._flush_lines = flush_lines
        self._max_lines = max_buffered_lines
        self._lines: list[str] = []
        self._dropped = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        # A file is opened now, so a bad path fails at startup rather than at the first request.
        self._file: BinaryIO | None = None
        if enabled and output not in ("stdout", "stderr"):
            self._file = open(output, "ab")  # closed in close()

    def log(self, rec: RequestRecord) -> None:
        """Queue one line for `rec`; returns at once when disabled."""
        if not self.enabled:
            return
        lines = self._lines
        if len(lines) >= self._max_lines or self._closed:
            self._dropped += 1  # writing has fallen far behind, or the log is closed: keep memory bounded
            return
        lines.append(self._format(rec))
        if len(lines) >= self._flush_lines and self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer (named `access-log-flush`). Lines logged before this are kept."""
        if not self.enabled or self._task is not None:
            return
        if self._closing:
            raise RuntimeError("access log is closed")
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="access-log-flush")
        self._task.add_done_callback(self._on_task_done)

    async def close(self) -> None:
        """Stop the writer, write every line logged so far, and close the file. Later lines are dropped."""
        if self._closing:
            return
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            assert self._wake is not None
            self._wake.set()
            await task
        # Lines logged while the task did its last write (or all of them, if it never ran); no await may
        # come between the empty buffer and `_closed`, or a line logged in between would be lost.
        while self._lines:
            await self._flush()
        self._closed = True
        if self._dropped:
            log.warning("access log dropped %d lines", self._dropped)
        if self._file is not None:
            self._file.close()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._closing:
            try:
                async with asyncio.timeout(self._flush_interval):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        if self._dropped and not self._closing:
            log.warning("access log writer fell behind; dropped %d lines", self._dropped)
            self._dropped = 0
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        data = ("\n".join(lines) + "\n").encode()
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            log.error("access log: could not write %d lines to %s: %s", len(lines), self.output, exc)

    def _write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
            self._file.flush()
            return
        stream = sys.stdout if self.output == "stdout" else sys.stderr  # looked up now: it may be replaced
        raw = getattr(stream, "buffer", None)
        if raw is not None:
            raw.write(data)
            raw.flush()
        else:
            stream.write(data.decode())
            stream.flush()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("access log writer failed; lines are kept until close()", exc_info=exc)
        elif not self._closing:
            log.error("access log writer returned unexpectedly")

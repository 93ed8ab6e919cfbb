"""The side servers: Prometheus `/metrics` on `--metrics-port`, and the debug dump on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from kthena_router.errors import error_body
from kthena_router.metrics import RouterMetrics

log = logging.getLogger(__name__)

_JSON = "application/json"


class _RequestHandler(RequestHandler):
    """aiohttp's connection handler, answering malformed HTTP with an OpenAI-style error object.

    aiohttp would answer with plain text and log a traceback for every malformed request; a client's bad
    bytes are not the router's error, so they get one log line at debug level.
    """

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; cannot send an error")
        reason = " ".join((exc.message or "malformed request").split())
        if len(reason) > 200:
            reason = reason[:200] + "..."
        log.debug("malformed HTTP request from %s: %s", request.remote, reason)
        response = web.Response(status=status, body=error_body(f"malformed HTTP request: {reason}",
                                                                "invalid_request_error", "bad_http_request"),
                                content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


def make_server(handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]], *,
                max_body_bytes: int) -> web.Server:
    """A low-level aiohttp server (no router, no middlewares) that cancels handlers of departed clients."""
    loop = asyncio.get_running_loop()

    def request_factory(message, payload, protocol: RequestHandler, writer, task) -> BaseRequest:
        return BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_body_bytes)

    return _Server(handler, request_factory=request_factory, handler_cancellation=True, access_log=None)


async def start_metrics_server(metrics: RouterMetrics, host: str, port: int) -> web.ServerRunner:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, body=b'{"message":"not found"}', content_type=_JSON)
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    runner = web.ServerRunner(make_server(handle, max_body_bytes=1024))
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def start_debug_server(dump: Callable[[], dict[str, Any]], port: int) -> web.ServerRunner:
    """`/debug/config_dump` (everything) and `/debug/config_dump/<section>` for each top-level key."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path != "/debug/config_dump" and not path.startswith("/debug/config_dump/"):
            return web.Response(status=404, body=b'{"message":"not found"}', content_type=_JSON)
        data = dump()
        section = path[len("/debug/config_dump/"):] if path != "/debug/config_dump" else ""
        if section:
            if section not in data:
                return web.Response(status=404, body=orjson.dumps(
                    {"message": f"unknown section {section!r}", "sections": sorted(data)}), content_type=_JSON)
            data = data[section]
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
        return web.Response(body=body, content_type=_JSON)

    runner = web.ServerRunner(make_server(handle, max_body_bytes=1024))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner

"""Listening sockets: one aiohttp server per distinct Gateway listener port, opened and closed as the
configuration changes. The `--port` socket is always open (it serves /healthz and /readyz)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from kthena_router.errors import error_body

log = logging.getLogger(__name__)

Handler = Callable[[BaseRequest, int], Awaitable[web.StreamResponse]]


class _PortServer:
    __slots__ = ("port", "runner", "site")

    def __init__(self, port: int, runner: web.ServerRunner, site: web.TCPSite) -> None:
        self.port = port
        self.runner = runner
        self.site = site


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


class ListenerManager:
    def __init__(self, handler: Handler, *, host: str, main_port: int, max_body_bytes: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._host = host
        self._main_port = main_port
        self._max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self._servers: dict[int, _PortServer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.unavailable: frozenset[int] = frozenset()

    @property
    def ports(self) -> frozenset[int]:
        return frozenset(self._servers)

    def bound_port(self, port: int) -> int:
        """The actual port of a listener (differs from `port` only when 0 was asked for, in tests)."""
        server = self._servers[port]
        sockets = server.site._server.sockets if server.site._server is not None else ()  # type: ignore[union-attr]
        return sockets[0].getsockname()[1] if sockets else port

    async def sync(self, ports: frozenset[int]) -> frozenset[int]:
        """Open sockets for new ports and close those no longer used; return the ports that failed to bind."""
        wanted = set(ports) | {self._main_port}
        for port in sorted(set(self._servers) - wanted):
            server = self._servers.pop(port)
            log.info("closing listener on port %d", port)
            await server.site.stop()
            # Requests still running on that port finish in the background.
            task = asyncio.create_task(server.runner.cleanup(), name=f"close-listener-{port}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        failed = set()
        for port in sorted(wanted - set(self._servers)):
            try:
                self._servers[port] = await self._open(port)
                log.info("listening on %s:%d", self._host, port)
            except OSError as exc:
                log.error("cannot listen on port %d: %s", port, exc)
                failed.add(port)
        self.unavailable = frozenset(failed)
        return self.unavailable

    async def _open(self, port: int) -> _PortServer:
        handler = self._handler

        async def handle(request: BaseRequest) -> web.StreamResponse:
            return await handler(request, port)

        runner = web.ServerRunner(make_server(handle, max_body_bytes=self._max_body_bytes))
        await runner.setup()
        site = web.TCPSite(runner, self._host, port, reuse_address=True, backlog=2048,
                           ssl_context=self._ssl_context if port == self._main_port else None)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        return _PortServer(port, runner, site)

    async def stop_accepting(self) -> None:
        """Close the listening sockets; connections already open carry on."""
        for server in self._servers.values():
            await server.site.stop()

    async def close(self) -> None:
        for server in self._servers.values():
            await server.runner.cleanup()
        self._servers.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

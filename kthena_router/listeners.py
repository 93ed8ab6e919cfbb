"""Listening sockets: one router HTTP server per distinct Gateway listener port, opened and closed as the
configuration changes. The `--port` socket is always open (it serves /healthz and /readyz)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

from kthena_router.http import HTTPRequest, HTTPServer, ServerLimits

log = logging.getLogger(__name__)

Handler = Callable[[HTTPRequest, int], Awaitable[None]]
_CLOSE_GRACE = 300.0  # requests still running on a port that closes keep going this long


class _PortServer:
    __slots__ = ("port", "http", "server")

    def __init__(self, port: int, http: HTTPServer, server: asyncio.Server) -> None:
        self.port = port
        self.http = http
        self.server = server


class ListenerManager:
    def __init__(self, handler: Handler, *, host: str, main_port: int, limits: ServerLimits,
                 ssl_context: ssl.SSLContext | None = None, reuse_port: bool = False) -> None:
        self._handler = handler
        self._host = host
        self._main_port = main_port
        self._limits = limits
        self._ssl_context = ssl_context
        self._reuse_port = reuse_port
        self._servers: dict[int, _PortServer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.unavailable: frozenset[int] = frozenset()

    @property
    def ports(self) -> frozenset[int]:
        return frozenset(self._servers)

    @property
    def open_connections(self) -> int:
        return sum(len(server.http.connections) for server in self._servers.values())

    @property
    def streams(self) -> int:
        return sum(server.http.streams for server in self._servers.values())

    def bound_port(self, port: int) -> int:
        """The actual port of a listener (differs from `port` only when 0 was asked for, in tests)."""
        sockets = self._servers[port].server.sockets
        return sockets[0].getsockname()[1] if sockets else port

    async def sync(self, ports: frozenset[int]) -> frozenset[int]:
        """Open sockets for new ports and close those no longer used; return the ports that failed to bind."""
        wanted = set(ports) | {self._main_port}
        for port in sorted(set(self._servers) - wanted):
            server = self._servers.pop(port)
            log.info("closing listener on port %d", port)
            server.server.close()
            # Requests still running on that port finish in the background.
            task = asyncio.create_task(server.http.shutdown(_CLOSE_GRACE), name=f"close-listener-{port}")
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

        async def handle(request: HTTPRequest) -> None:
            await handler(request, port)

        tls = self._ssl_context if port == self._main_port else None
        http = HTTPServer(handle, self._limits, scheme="https" if tls is not None else "http")
        server = await asyncio.get_running_loop().create_server(
            http, self._host, port, reuse_address=True, reuse_port=self._reuse_port or None, backlog=2048,
            ssl=tls)
        return _PortServer(port, http, server)

    async def stop_accepting(self) -> None:
        """Close the listening sockets; connections already open carry on (without keep-alive)."""
        for server in self._servers.values():
            server.server.close()
            server.http.closing = True
            for conn in list(server.http.connections):
                if conn.idle:
                    conn.abort()

    async def close(self, grace: float = 0.0) -> None:
        for server in self._servers.values():
            server.server.close()
        await asyncio.gather(*(server.http.shutdown(grace) for server in self._servers.values()))
        self._servers.clear()
        for task in list(self._closing):
            task.cancel()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

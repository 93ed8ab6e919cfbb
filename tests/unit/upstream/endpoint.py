"""A raw loopback HTTP/1.1 server for the client tests, scripted to behave or misbehave per request.

Each request (head plus Content-Length body) is answered by the next script in `replies`, a list of steps:
bytes are written, a float is slept, a coroutine function is awaited with the writer, and CLOSE, RESET and HANG end the connection the named way (HANG keeps
it open, silent, until the client goes). Requests past the list get `OK`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from tests.integration.harness import content_length

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
CLOSE = "close"  # FIN, nothing more
RESET = "reset"  # RST
HANG = "hang"  # say nothing until the client closes


def request(path: str = "/v1/completions", body: bytes = b"{}", method: str = "POST") -> tuple[bytes, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: endpoint\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head, body


class Endpoint:
    def __init__(self, replies: list[list[Any]] | None = None) -> None:
        self.replies = list(replies or [])
        self.requests: list[bytes] = []
        self.connections = 0
        self.client_closes = 0  # connections the client closed while the server was waiting on it
        self.writers: list[asyncio.StreamWriter] = []
        self.read_delay = 0.0  # seconds to wait before reading each request body
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.client_closes += 1
                    return
                if self.read_delay:
                    await asyncio.sleep(self.read_delay)
                body = await reader.readexactly(content_length(head))
                self.requests.append(head + body)
                steps = self.replies.pop(0) if self.replies else [OK]
                for step in steps:
                    if isinstance(step, bytes):
                        writer.write(step)
                        await writer.drain()
                    elif callable(step):
                        await step(writer)
                    elif isinstance(step, float):
                        await asyncio.sleep(step)
                    elif step == CLOSE:
                        writer.close()
                        return
                    elif step == RESET:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    elif step == HANG:
                        await reader.read()
                        self.client_closes += 1
                        return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_closes += 1
        finally:
            writer.close()


async def read_all(response) -> bytes:
    """The whole body of an upstream response, which is then released to its pool."""
    body = b""
    while piece := await response.read():
        body += piece
    response.release()
    return body


async def eventually(condition, within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)

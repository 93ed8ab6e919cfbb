"""A minimal HTTP/2 cleartext (prior knowledge) server standing in for a model server's h2c port.

It speaks just enough HTTP/2 to answer one request per stream: it reads the client preface and frames,
acknowledges SETTINGS, and when a request stream ends answers `:status 200` with a JSON body naming the pod
and port (HPACK: the static `:status 200` entry and literal fields without indexing or Huffman coding).
A client that speaks HTTP/1.1 gets the connection closed, as an h2c-only server does.
"""

from __future__ import annotations

import asyncio
import json
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x4, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    # Literal header field without indexing, new name; both strings shorter than 127 bytes.
    name_b, value_b = name.encode(), value.encode()
    return b"\x00" + bytes((len(name_b),)) + name_b + bytes((len(value_b),)) + value_b


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pod: str) -> None:
    try:
        if await reader.readexactly(len(PREFACE)) != PREFACE:
            return
        writer.write(_frame(SETTINGS, 0, 0))
        port = writer.get_extra_info("sockname")[1]
        while True:
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            await reader.readexactly(length)
            if kind == SETTINGS and not flags & ACK:
                writer.write(_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                writer.write(_frame(PING, ACK, 0, b"\0" * 8))
            elif kind == GOAWAY:
                return
            elif kind in (HEADERS, DATA) and flags & END_STREAM:
                body = json.dumps({"pod": pod, "service": pod.rsplit("-", 1)[0], "proto": "HTTP/2.0",
                                   "httpPort": str(port), "headers": {}}).encode()
                block = b"\x88" + _literal("content-type", "application/json") + _literal("x-echo-pod", pod)
                block += _literal("content-length", str(len(body)))
                writer.write(_frame(HEADERS, END_HEADERS, stream, block) + _frame(DATA, END_STREAM, stream, body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def start_h2c(ip: str, port: int, pod: str) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _serve(r, w, pod), ip, port, reuse_address=True)

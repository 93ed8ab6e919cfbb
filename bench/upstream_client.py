"""Micro-benchmark: client CPU time per request of the router's upstream client against aiohttp's.

Runs the overhead benchmark's fake OpenAI server (`bench/overhead/upstream.py`) in a child process (on its
own CPU when there are two), then, in this process on uvloop, sends the same keep-alive requests through
each client: `kthena_router.upstream` and `aiohttp.ClientSession`. It reports
this process's CPU time per request (user + system, so other load on the machine barely moves it) and the
requests per second, the median of interleaved rounds. Non-streamed completions and SSE streams of
`--events` events (each its own chunk) are measured separately; `--concurrency` sets the requests in flight.

    .venv/bin/python bench/upstream_client.py [--requests 4000] [--rounds 3] [--concurrency 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kthena_router import upstream as lean  # noqa: E402

HOST = "127.0.0.1"

Send = Callable[[], Awaitable[int]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.overhead.upstream", "--host", HOST, "--port", str(port)]
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
        command = ["taskset", "-c", "1", *command]
    server = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the benchmark server did not start")


def _body(stream: bool, events: int) -> bytes:
    return (b'{"model":"bench","prompt":"Say something short.","max_tokens":%d,"stream":%s}'
            % (events if stream else 16, b"true" if stream else b"false"))


def _own_client(module, port: int, body: bytes) -> tuple[Send, Callable[[], Awaitable[None]]]:
    client = module.UpstreamClient(connect_timeout=5.0, read_timeout=30.0)
    send = client.send
    length = len(body)

    async def one() -> int:
        # The head is built per request, as the proxy does.
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (HOST.encode(), port, length))
        response = await send(HOST, port, head, body)
        read = response.read
        size = 0
        while piece := await read():
            size += len(piece)
        response.release()
        return size

    return one, client.close


def _aiohttp_client(port: int, body: bytes, stream: bool) -> tuple[Send, Callable[[], Awaitable[None]]]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    url = f"http://{HOST}:{port}/v1/completions"
    headers = {"Content-Type": "application/json"}

    async def one() -> int:
        async with http.post(url, data=body, headers=headers) as response:
            if stream:
                size = 0
                async for piece in response.content.iter_any():
                    size += len(piece)
                return size
            return len(await response.read())

    return one, http.close


CLIENTS = {
    "kthena_router.upstream": lambda port, body, stream: _own_client(lean, port, body),
    "aiohttp.ClientSession": _aiohttp_client,
}


async def _measure(make, port: int, stream: bool, events: int, requests: int, concurrency: int) -> tuple[float, float]:
    body = _body(stream, events)
    one, close = make(port, body, stream)
    try:
        async def worker(count: int) -> None:
            for _ in range(count):
                if not await one():
                    raise RuntimeError("empty response body")

        await asyncio.gather(*(worker(50) for _ in range(concurrency)))  # warm: connections and caches
        per_worker = max(1, requests // concurrency)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = per_worker * concurrency
        return cpu / done * 1e6, done / wall
    finally:
        await close()


async def _main(args: argparse.Namespace, port: int) -> None:
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    kinds = [("json", False), (f"sse x{args.events}", True)]
    for _ in range(args.rounds):
        for kind, stream in kinds:
            for concurrency in args.concurrency:
                for name, make in CLIENTS.items():
                    cell = await _measure(make, port, stream, args.events, args.requests, concurrency)
                    results.setdefault((kind, name, concurrency), []).append(cell)
    print(f"\nclient CPU per request (median of {args.rounds} rounds, {args.requests} requests each, uvloop)\n")
    print("| body | in flight | client | CPU µs/request | requests/s | CPU vs aiohttp |")
    print("|---|---|---|---|---|---|")
    for kind, _ in kinds:
        for concurrency in args.concurrency:
            base = statistics.median(c for c, _ in results[(kind, "aiohttp.ClientSession", concurrency)])
            for name in CLIENTS:
                cells = results[(kind, name, concurrency)]
                cpu = statistics.median(c for c, _ in cells)
                rps = statistics.median(r for _, r in cells)
                print(f"| {kind} | {concurrency} | {name} | {cpu:.1f} | {rps:,.0f} | {cpu / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=16, help="SSE events per streamed response")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    port = _free_port()
    server = _start_server(port)
    try:
        uvloop.run(_main(args, port))
    finally:
        server.terminate()
        server.wait(5)


if __name__ == "__main__":
    main()

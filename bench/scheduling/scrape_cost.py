"""What scraping costs: the router's CPU for reading N endpoints' /metrics at the scrape interval.

`python -m bench.scheduling.scrape_cost` starts N cheap /metrics servers on loopback in a child process
(pinned to CPU 1 when there are two), each answering with a real vLLM v1 exposition (15 KB, from
`tests/unit/endpoints/data/vllm_v1.txt`), and runs the router's `Scraper` in this process (pinned to
CPU 0) for each endpoint count. CPU is this process's utime + stime over the measured window, as a share
of one core; scrapes/s counts the good scrapes. Two fleets:

- `busy`: every answer reports different numbers (a waiting count that moves), as under load;
- `idle`: every answer is the same, with nothing running or waiting, as a fleet without traffic.

`--max-rate` is the router's `--max-scrapes-per-second` (its default unless given; 0 = no limit).
`--fixed` scrapes every endpoint every interval whatever it reports (the adaptive interval off), for
comparison; `--latency` also parses the TTFT/TPOT histograms, as the router does when `least-latency` is
enabled (the default pipeline does not use it). Numbers depend on the machine and on what else runs on it; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.scraper import Scraper
from kthena_router.endpoints.state import EndpointStates
from kthena_router.settings import Settings
from kthena_router.snapshot import Endpoint, EndpointKey

EXPOSITION = Path(__file__).resolve().parents[2] / "tests/unit/endpoints/data/vllm_v1.txt"
HOST = "127.0.0.1"
DEFAULT_MAX_RATE = Settings().max_scrapes_per_second
WAITING_LINE = 'vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} '
RUNNING_LINE = 'vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} '


def _body(text: str, waiting: int, running: int) -> bytes:
    out = []
    for line in text.splitlines():
        if line.startswith(WAITING_LINE):
            line = f"{WAITING_LINE}{waiting}.0"
        elif line.startswith(RUNNING_LINE):
            line = f"{RUNNING_LINE}{running}.0"
        out.append(line)
    return ("\n".join(out) + "\n").encode()


class _MetricsServer(asyncio.Protocol):
    """Answers every GET with the exposition (busy: a new waiting count each time); keep-alive."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.turn = 0
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            if head.startswith(b"GET /v1/models"):
                body = b'{"object":"list","data":[{"id":"m","object":"model"}]}'
                kind = b"application/json"
            else:
                body = self.bodies[self.turn % len(self.bodies)]
                self.turn += 1
                kind = b"text/plain; version=0.0.4"
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)


async def serve(count: int, busy: bool) -> None:
    text = EXPOSITION.read_text()
    bodies = [_body(text, w, 4) for w in range(16)] if busy else [_body(text, 0, 0)]
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(lambda: _MetricsServer(bodies), HOST, 0) for _ in range(count)]
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def measure(ports: list[int], interval: float, seconds: float, fixed: bool = False,
                  latency: bool = False, max_rate: float = 0.0) -> dict:
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=interval, read_latency=latency, max_rate=0.0 if fixed else max_rate,
                      **({"max_interval": interval} if fixed else {}))
    endpoints = [Endpoint(EndpointKey(HOST, p), ObjectRef("bench", f"pod-{i}"), "vllm", f"{HOST}:{p}")
                 for i, p in enumerate(ports)]
    scraper.sync(endpoints)
    await asyncio.sleep(max(1.0, interval * 20))  # connect, first scrapes, settle into the adaptive rhythm
    scrapes0 = sum(s.scrapes for s in states.by_key.values())
    cpu0, wall0 = _cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1, wall1 = _cpu(), time.perf_counter()
    scrapes1 = sum(s.scrapes for s in states.by_key.values())
    failures = sum(s.failures for s in states.by_key.values())
    ages = [time.monotonic() - s.updated_at for s in states.by_key.values()]
    await scraper.close()
    wall = wall1 - wall0
    return {"endpoints": len(ports), "cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "scrapes_per_s": (scrapes1 - scrapes0) / wall, "failures": failures,
            "max_age_ms": 1000 * max(ages)}


async def run(counts: list[int], interval: float, seconds: float, fleets: list[str], fixed: bool,
              latency: bool, max_rate: float) -> list[dict]:
    rows = []
    for fleet in fleets:
        for count in counts:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.scheduling.scrape_cost", "--serve", str(count), "--fleet", fleet,
                stdout=asyncio.subprocess.PIPE)
            try:
                assert child.stdout is not None
                ports = json.loads(await child.stdout.readline())
                row = await measure(ports, interval, seconds, fixed, latency, max_rate)
            finally:
                child.send_signal(signal.SIGTERM)
                await child.wait()
            row["fleet"] = fleet
            rows.append(row)
            print(f"{fleet:5} {count:4d} endpoints: {row['cpu_percent']:5.1f}% of a core, "
                  f"{row['scrapes_per_s']:7.0f} scrapes/s, oldest numbers {row['max_age_ms']:.0f} ms, "
                  f"{row['failures']} failures", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default="8,32,100", help="comma-separated endpoint counts")
    parser.add_argument("--interval", type=float, default=0.05, help="--scrape-interval, seconds")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per row")
    parser.add_argument("--fleet", default="busy,idle", help="busy, idle or both")
    parser.add_argument("--fixed", action="store_true", help="scrape every interval (adaptive interval off)")
    parser.add_argument("--latency", action="store_true", help="also parse the TTFT/TPOT histograms")
    parser.add_argument("--max-rate", type=float, default=DEFAULT_MAX_RATE,
                        help=f"busy scrapes per second at most (the router's default: {DEFAULT_MAX_RATE:g})")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the router
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    if args.serve:
        _pin(1)
        runner(serve(args.serve, args.fleet == "busy"))
        return
    _pin(0)
    runner(run([int(c) for c in args.endpoints.split(",")], args.interval, args.seconds,
               args.fleet.split(","), args.fixed, args.latency, args.max_rate))


if __name__ == "__main__":
    main()

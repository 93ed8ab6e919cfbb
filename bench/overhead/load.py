"""Load generators on CPU 1: wrk for closed-loop throughput, and asyncio clients for open-loop latency
(requests sent on a fixed schedule, latency counted from the scheduled time, so a stall is not hidden by
the client waiting) and for a thousand slow streams held open at once."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def body(tokens: int, stream: bool, **extra) -> str:
    fields = ['"model":"bench"', '"prompt":"Say something about benchmarks."', f'"max_tokens":{tokens}',
              f'"stream":{"true" if stream else "false"}']
    fields += [f'"{k}":{v}' for k, v in extra.items()]
    return "{" + ",".join(fields) + "}"


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50: float  # seconds
    p99: float
    errors: int


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, script: Path, connections: int, duration: float) -> WrkResult:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    done = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                           "--latency", "-s", str(script), url + "/v1/completions"],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk against {url} printed no result: {done.stderr or out}")
    rps = float(found.group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in match.groups())
    return WrkResult(rps, requests, p50, p99, errors)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_loop(url: str, rate: float, duration: float, payload: str) -> dict:
    """Requests at a fixed rate; latency from the scheduled start; reports achieved vs offered rate."""
    data = payload.encode()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        count = int(rate * duration)

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - loop.time()))
            try:
                async with session.post(url + "/v1/completions", data=data,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(loop.time() - at)

        began = time.perf_counter()
        await asyncio.gather(*(one(start + i / rate) for i in range(count)))
        elapsed = time.perf_counter() - began
    return {"offered": rate, "achieved": len(latencies) / max(elapsed, 1e-9), "errors": errors,
            "p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)}


async def slow_streams(url: str, streams: int, tokens: int, itl_ms: int, probes: int, on_held=None) -> dict:
    """`streams` SSE responses held open at once (paced by the upstream), plus quick probe requests made
    while they are all open; counts streams that did not end with [DONE]."""
    payload = body(tokens, True, bench_itl_ms=itl_ms).encode()
    probe = body(1, False).encode()
    opened = asyncio.Event()
    first_events = 0
    failures = 0
    probe_latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def stream() -> None:
            nonlocal first_events, failures
            try:
                async with session.post(url + "/v1/completions", data=payload,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.content.readuntil(b"\n\n")
                    first_events += 1
                    if first_events == streams:
                        opened.set()
                    rest = await resp.read()
                    if resp.status != 200 or not rest.endswith(b"data: [DONE]\n\n"):
                        failures += 1
            except (aiohttp.ClientError, asyncio.IncompleteReadError, ValueError):
                failures += 1

        tasks = [asyncio.create_task(stream()) for _ in range(streams)]
        try:
            await asyncio.wait_for(opened.wait(), 60)
        except TimeoutError:
            pass
        held = first_events
        if on_held is not None:
            on_held()
        for _ in range(probes):
            began = time.perf_counter()
            try:
                async with session.post(url + "/v1/completions", data=probe,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                probe_latencies.append(time.perf_counter() - began)
            except aiohttp.ClientError:
                failures += 1
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
    return {"streams": streams, "held_open": held, "failures": failures,
            "probe_p50": _percentile(probe_latencies, 0.5), "probe_p99": _percentile(probe_latencies, 0.99)}

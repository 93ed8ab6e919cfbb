"""Load generators on CPU 1: wrk for closed-loop throughput and latency at a fixed number of connections, and
the benchmark's own client (`client.py`) for open-loop latency at a fixed rate and for slow streams held open.

Open loop: arrivals are Poisson at the offered rate and each request is sent at its scheduled time on an idle
connection or a new one, never held back by earlier responses, so a stall in the system shows up as latency
instead of as fewer requests (no coordinated omission). Latency is counted from the actual send; how late the
client itself sent (timer granularity, a busy CPU 1) is reported next to it, as is the achieved rate.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.overhead.client import Client, Result

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""
PATH = "/v1/completions"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def body(tokens: int, stream: bool, **extra: int) -> str:
    fields = ['"model":"bench"', '"prompt":"Say something about benchmarks."', f'"max_tokens":{tokens}',
              f'"stream":{"true" if stream else "false"}']
    fields += [f'"{k}":{v}' for k, v in extra.items()]
    return "{" + ",".join(fields) + "}"


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    requests: int
    p50: float  # seconds
    p90: float
    p99: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(port: int, script: Path, connections: int, seconds: int, cpus: str = "1") -> WrkResult:
    """`wrk -t1` (keep-alive) for whole seconds; a request slower than 5 s counts as a socket error."""
    done = subprocess.run(["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                           "--latency", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk against port {port} printed no result: {done.stderr or out}")

    def pct(q: str) -> float:
        return _seconds(re.search(rf"^\s+{q}%\s+(\S+)", out, re.M).group(1))

    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in m.groups()) if (
        m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)) else 0
    return WrkResult(float(found.group(1)), int(re.search(r"(\d+) requests in", out).group(1)),
                     pct("50"), pct("90"), pct("99"), non_2xx, sock)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _failed(result: Result, tokens: int, stream: bool) -> bool:
    return not result.ok or (stream and (not result.done or result.events < tokens))


async def open_loop(port: int, payload: str, *, rate: float, seconds: float, tokens: int, stream: bool,
                    seed: int = 7) -> dict:
    """Poisson arrivals at `rate` for `seconds`; latency (and time to first event) percentiles from the send."""
    client = Client("127.0.0.1", port)
    request = client.request_bytes(PATH, payload.encode())
    rng = random.Random(seed)
    results: list[Result] = []
    lags: list[float] = []
    tasks: list[asyncio.Task] = []

    async def one(at: float) -> None:
        results.append(await client.request(request, at))

    start = time.perf_counter() + 0.02
    at = start
    try:
        while True:
            at += rng.expovariate(rate)
            if at - start > seconds:
                break
            delay = at - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            lags.append(max(0.0, sent - at))
            tasks.append(asyncio.create_task(one(sent)))
        _, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for task in pending:
            task.cancel()
    finally:
        client.close()
    good = [r for r in results if not _failed(r, tokens, stream)]
    ends = [r.end for r in good]
    span = (max(ends) - start) if ends else seconds
    first = [(r.ttft if stream else r.ttfb) - r.sent for r in good]
    total = [r.end - r.sent for r in good]
    return {"offered": len(tasks) / seconds, "achieved": len(good) / max(span, 1e-9), "sent": len(tasks),
            "errors": len(tasks) - len(good), "p50": percentile(total, 0.5), "p90": percentile(total, 0.9),
            "p99": percentile(total, 0.99), "first_p50": percentile(first, 0.5),
            "first_p99": percentile(first, 0.99), "send_lag_p99": percentile(lags, 0.99)}


async def _probe(client: Client, request: bytes, count: int, gap: float) -> tuple[list[float], int]:
    """`count` one-event streams one after another: time to the first event of each, and failures."""
    ttfts: list[float] = []
    failures = 0
    for _ in range(count):
        result = await client.request(request)
        if _failed(result, 1, True):
            failures += 1
        else:
            ttfts.append(result.ttft - result.sent)
        await asyncio.sleep(gap)
    return ttfts, failures


async def slow_streams(port: int, *, streams: int, tokens: int, itl_ms: int, probes: int, on_held=None) -> dict:
    """`streams` SSE responses paced by the upstream (`itl_ms` apart), all open at once; probe streams measure
    time to first event before and while they are open. A stream fails unless it ends 200 with every event and
    `[DONE]`."""
    payload = body(tokens, True, bench_itl_ms=itl_ms).encode()
    probe_client = Client("127.0.0.1", port)
    probe_request = probe_client.request_bytes(PATH, body(1, True).encode())
    idle_ttft, idle_failures = await _probe(probe_client, probe_request, probes, 0.01)
    clients = [Client("127.0.0.1", port) for _ in range(streams)]
    state = {"open": 0, "max_open": 0}
    all_open = asyncio.Event()

    def on_event(conn, count: int) -> None:
        if conn.result.events == count:  # the first events of this stream: it is open now
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
            if state["open"] >= streams:
                all_open.set()

    async def one(client: Client) -> Result:
        result = await client.request(client.request_bytes(PATH, payload), None, on_event)
        if result.events >= 1:
            state["open"] -= 1
        return result

    began = time.perf_counter()
    tasks = []
    for client in clients:
        tasks.append(asyncio.create_task(one(client)))
        await asyncio.sleep(0.001)  # a ramp of about a second, not a thousand SYNs at once
    try:
        await asyncio.wait_for(all_open.wait(), 30)
    except TimeoutError:
        pass
    held = state["open"]
    rss = on_held() if on_held is not None else 0
    busy_ttft, busy_failures = await _probe(probe_client, probe_request, probes, 0.02)
    done, pending = await asyncio.wait(tasks, timeout=tokens * itl_ms / 1000 + 60)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - began
    for client in clients:
        client.close()
    probe_client.close()
    results = [t.result() for t in done]
    failed = [r for r in results if _failed(r, tokens, True)] + [None] * len(pending)
    reasons: dict[str, int] = {}
    for r in failed:
        reason = "no answer" if r is None else r.error or (f"status {r.status}" if r.status != 200 else
                                                           f"{r.events} events, [DONE] {'seen' if r.done else 'missing'}")
        reason = reason.split(":")[0] if r is not None and r.error else reason
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"streams": streams, "tokens": tokens, "itl_ms": itl_ms, "held_open": held,
            "max_open": state["max_open"], "failures": len(failed), "failure_reasons": reasons,
            "seconds": elapsed, "rss_held_kib": rss,
            "idle_ttft_p50": percentile(idle_ttft, 0.5), "idle_ttft_p99": percentile(idle_ttft, 0.99),
            "ttft_p50": percentile(busy_ttft, 0.5), "ttft_p99": percentile(busy_ttft, 0.99),
            "probe_failures": idle_failures + busy_failures}


async def check(port: int, kinds: list[tuple[int, bool]]) -> list[str]:
    """One request of each (tokens, stream) kind through the system: status, event count and `[DONE]`."""
    client = Client("127.0.0.1", port)
    problems = []
    try:
        for tokens, stream in kinds:
            result = await client.request(client.request_bytes(PATH, body(tokens, stream).encode()))
            if _failed(result, tokens, stream):
                problems.append(f"{'sse' if stream else 'json'}{tokens if stream else ''}: status {result.status}, "
                                f"{result.events} events, [DONE] {result.done} {result.error}".strip())
    finally:
        client.close()
    return problems

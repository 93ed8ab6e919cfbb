"""Open-loop load: send each trace request at its time, whatever happened to the earlier ones.

Each request is streamed; TTFT is the time to the first server-sent event, end-to-end latency the time to
the end of the stream, output tokens the number of token events. A 429 or 503 counts as shed; any
other failure as an error; a request still running when the cell's drain deadline passes is cancelled
and counted as timed out. Times come from `time.perf_counter`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.scheduling.workloads import TraceRequest

SHED_STATUSES = frozenset({429, 503})


@dataclass(slots=True)
class Result:
    klass: str
    status: int = 0  # HTTP status; 0 when no response came
    outcome: str = "error"  # ok, shed, error, timeout
    sent_at: float = 0.0  # seconds after the cell started
    ttft: float = float("nan")
    e2e: float = float("nan")
    tokens: int = 0
    done_at: float = float("nan")


async def _one(
    session: aiohttp.ClientSession, base: str, req: TraceRequest, start: float, result: Result
) -> None:
    await asyncio.sleep(max(0.0, start + req.at - time.perf_counter()))
    sent = time.perf_counter()
    result.sent_at = sent - start
    headers = {"Content-Type": "application/json", **req.headers}
    try:
        async with session.post(base + req.path, data=req.body, headers=headers) as resp:
            result.status = resp.status
            if resp.status != 200:
                await resp.read()
                result.outcome = "shed" if resp.status in SHED_STATUSES else "error"
                return
            tokens = 0
            first = 0.0
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                if not first:
                    first = time.perf_counter()
                if (
                    line.startswith(b"data: [DONE]")
                    or b'"choices":[]' in line
                    or b'"role":"assistant"' in line
                ):
                    continue
                if b'"error"' in line[:16]:
                    result.outcome = "error"
                    return
                tokens += 1
            end = time.perf_counter()
            result.tokens = tokens
            result.ttft = (first or end) - sent
            result.e2e = end - sent
            result.done_at = end - start
            result.outcome = "ok"
    except (aiohttp.ClientError, ConnectionError):
        result.outcome = "error"


async def run_trace(base: str, trace: list[TraceRequest], drain_s: float) -> tuple[list[Result], float]:
    """Replay `trace` against `base`; returns per-request results and the cell's wall time."""
    results = [Result(klass=req.klass) for req in trace]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        tasks = [
            asyncio.create_task(_one(session, base, req, start, res), name=f"bench-request-{i}")
            for i, (req, res) in enumerate(zip(trace, results, strict=True))
        ]
        last_send = trace[-1].at if trace else 0.0
        done, pending = await asyncio.wait(tasks, timeout=last_send + drain_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task, res in zip(tasks, results, strict=True):
            if task in pending:
                res.outcome = "timeout"
        wall = time.perf_counter() - start
    return results, wall

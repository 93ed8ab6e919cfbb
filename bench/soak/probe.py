"""Samples of the router process (RSS, open file descriptors from /proc; runtime counts from the debug port)
and the least-squares slopes the soak is judged by.

File descriptors and tasks move with the load (one per client connection, upstream connection or request in
progress), so besides the raw counts each sample carries the part the load does not explain:
`fds_excess = fds - client_connections - upstream_connections` and `tasks_excess = tasks - streams`. A leak
shows as a rising excess; a busy moment does not.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
            break
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def sample(session: aiohttp.ClientSession, pid: int, debug_port: int, t: float) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{debug_port}/debug/config_dump/runtime") as resp:
        runtime = await resp.json()
    rss, fds = proc_stats(pid)
    return {"t": round(t, 2), "rss_mib": round(rss, 2), "fds": fds, "tasks": runtime["tasks"],
            "client_connections": runtime["client_connections"], "streams": runtime["streams"],
            "upstream_connections": runtime["upstream_connections"], "active_requests": runtime["active_requests"],
            "fds_excess": fds - runtime["client_connections"] - runtime["upstream_connections"],
            "tasks_excess": runtime["tasks"] - runtime["streams"]}


async def rest_sample(session: aiohttp.ClientSession, pid: int, debug_port: int, t: float,
                      limit: float = 15.0) -> dict[str, float]:
    """A sample once no request is in progress and no client connection is open; after `limit` seconds, the
    last sample with `at_rest` false (requests or connections that never end are a leak too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        current = await sample(session, pid, debug_port, t)
        current["at_rest"] = current["active_requests"] == 0 and current["client_connections"] == 0
        if current["at_rest"] or loop.time() > deadline:
            return current
        await asyncio.sleep(0.2)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute; 0 with fewer than 3 points."""
    n = len(points)
    if n < 3:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0

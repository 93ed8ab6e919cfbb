"""`--workers N`: several processes share the listener port, each serving its own share of connections."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import free_port, pod, pool, route_to_pool, write_manifests

ROOT = Path(__file__).resolve().parents[2]
MODEL = "m"
ROUTE = route_to_pool("p")


def _two_free_ports() -> int:
    """A port whose successor is free too (worker k serves metrics on the metrics port + k)."""
    for _ in range(100):
        first = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise RuntimeError("no two adjacent free ports")


async def _requests_served(session: aiohttp.ClientSession, metrics_port: int) -> float:
    async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kthena_router_requests_total{"))


async def test_two_workers_share_the_port_and_stop_together_on_sigterm(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL), POD_IPS[0], pod_port)
    port, metrics_port = free_port(), _two_free_ports()
    write_manifests(tmp_path, "c.yaml", pool("p", pod_port, {"app": "sim"}),
                    pod("sim-0", POD_IPS[0], {"app": "sim"}), ROUTE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kthena_router", "--config-dir", str(tmp_path), "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port), "--debug-port", "0",
        "--access-log", "false", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                for metrics in (metrics_port, metrics_port + 1):
                    while True:
                        try:
                            await _requests_served(session, metrics)
                            break
                        except aiohttp.ClientConnectionError:
                            await asyncio.sleep(0.1)
            body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
            for _ in range(40):  # a new connection each time: the kernel spreads them over the workers
                async with aiohttp.ClientSession() as fresh:
                    async with fresh.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as resp:
                        assert resp.status == 200
            served = [await _requests_served(session, m) for m in (metrics_port, metrics_port + 1)]
        assert sum(served) == 40 and all(count > 0 for count in served), served
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        await sim.close()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err

"""SIGTERM drains: /readyz fails at once, accepting goes on for --drain-delay, streams in flight finish intact."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import free_port, gateway, pod, pool, route_to_pool, write_manifests

ROOT = Path(__file__).resolve().parents[2]
MODEL = "m"
ROUTE = route_to_pool("p")
TOKENS = 20


async def _start_router(config_dir: Path, port: int, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kthena_router", "--config-dir", str(config_dir), "--host", "127.0.0.1",
        "--port", str(port), "--metrics-port", "0", "--debug-port", "0", "--access-log", "false", *extra,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    async with aiohttp.ClientSession() as session, asyncio.timeout(20):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def _stream(session: aiohttp.ClientSession, url: str, started: asyncio.Queue) -> bytes:
    body = {"model": MODEL, "prompt": "drain", "max_tokens": TOKENS, "stream": True}
    async with session.post(url + "/v1/completions", json=body) as resp:
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        started.put_nowait(1)
        return first + await resp.read()


async def _status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as fresh, fresh.get(url) as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return None


async def test_streams_open_at_sigterm_all_finish_and_the_process_exits_0(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, itl_ms=60, default_output_tokens=TOKENS), POD_IPS[0],
                                pod_port)
    write_manifests(tmp_path, "c.yaml", pool("p", pod_port, {"app": "sim"}), pod("s", POD_IPS[0], {"app": "sim"}),
                    ROUTE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await _start_router(tmp_path, port, "--drain-delay", "0.6", "--drain-timeout", "20")
    try:
        started: asyncio.Queue = asyncio.Queue()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = [asyncio.create_task(_stream(session, url, started)) for _ in range(100)]
            async with asyncio.timeout(15):
                for _ in range(100):
                    await started.get()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            assert await _status(url + "/readyz") == 503  # at once
            assert await _status(url + "/healthz") == 200  # still accepting during the delay
            await asyncio.sleep(0.8)
            assert await _status(url + "/healthz") is None  # the listener has closed
            async with asyncio.timeout(20):
                bodies = await asyncio.gather(*streams)
        for body in bodies:
            events = body.decode().strip().split("\n\n")
            assert events[-1] == "data: [DONE]" and len(events) == TOKENS + 1, events[-3:]
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.close()


async def test_drain_timeout_cuts_what_is_left_and_a_second_sigterm_hurries(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, itl_ms=200, default_output_tokens=100), POD_IPS[0],
                                pod_port)
    write_manifests(tmp_path, "c.yaml", pool("p", pod_port, {"app": "sim"}), pod("s", POD_IPS[0], {"app": "sim"}),
                    ROUTE)
    try:
        for hurry in (False, True):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            timeout = "30" if hurry else "0.5"
            proc = await _start_router(tmp_path, port, "--drain-timeout", timeout)
            started: asyncio.Queue = asyncio.Queue()
            async with aiohttp.ClientSession() as session:
                stream = asyncio.create_task(_stream(session, url, started))
                await asyncio.wait_for(started.get(), 10)
                proc.send_signal(signal.SIGTERM)
                if hurry:
                    await asyncio.sleep(0.3)
                    proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    _, err = await proc.communicate()
                results = await asyncio.gather(stream, return_exceptions=True)
            assert proc.returncode == 0, err.decode()
            assert b"closing 1 requests still in flight" in err
            assert isinstance(results[0], Exception) or not results[0].endswith(b"data: [DONE]\n\n")
    finally:
        await sim.close()


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_a_gateway_added_while_draining_opens_no_new_socket(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL, itl_ms=200, default_output_tokens=100), POD_IPS[0],
                                pod_port)
    base = (pool("p", pod_port, {"app": "sim"}), pod("s", POD_IPS[0], {"app": "sim"}), ROUTE)
    write_manifests(tmp_path, "c.yaml", *base)
    port, before, during = free_port(), free_port(), free_port()
    proc = await _start_router(tmp_path, port, "--drain-timeout", "30", "--reload-interval", "0.1")
    try:
        write_manifests(tmp_path, "g.yaml", gateway("before", before))
        async with asyncio.timeout(10):  # the control: a Gateway added before SIGTERM gets its socket
            while not await _accepts(before):
                await asyncio.sleep(0.05)
        started: asyncio.Queue = asyncio.Queue()
        async with aiohttp.ClientSession() as session:
            stream = asyncio.create_task(_stream(session, url=f"http://127.0.0.1:{port}", started=started))
            await asyncio.wait_for(started.get(), 10)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            write_manifests(tmp_path, "g.yaml", gateway("before", before), gateway("during", during))
            await asyncio.sleep(1.5)  # 15 reload intervals
            assert not await _accepts(during)
            assert not await _accepts(before)
            assert proc.returncode is None  # still draining the stream
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                _, err = await proc.communicate()
            await asyncio.gather(stream, return_exceptions=True)
        assert proc.returncode == 0, err.decode()
        assert f"127.0.0.1:{during}".encode() not in err, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.close()

"""The simulated fleet: several vLLM simulators, each on its own loopback address, in one process.

`FLEET` describes a heterogeneous fleet (different `speed`s) with the cost model that gives routing
something to win or lose: prefill time per uncached token, a batch-size-dependent step time, a bounded
KV cache with prefix caching, and two LoRA slots per server. `start_fleet` runs
`python -m bench.scheduling.fleet` as a child process (pinned with `taskset` when asked) and returns
once every simulator answers /health; `Fleet.stop` ends it. A fresh fleet per system under test means
every system starts from the same cold caches.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp

from bench.scheduling.workloads import ADAPTERS, MODEL
from kthena_router.sim import SimConfig, start_simulator

log = logging.getLogger(__name__)

PORT = 18000
SPEEDS = (1.5, 1.25, 1.0, 1.0, 1.0, 0.8, 0.7, 0.6)


def fleet_configs(speeds: tuple[float, ...] = SPEEDS) -> list[tuple[str, SimConfig]]:
    """(address, config) of every simulator of the fleet."""
    out = []
    for i, speed in enumerate(speeds):
        config = SimConfig(
            model=MODEL,
            loras=ADAPTERS,
            ttft_ms=20.0,
            prefill_ms_per_token=0.3,
            itl_ms=30.0,
            itl_batch_factor=0.08,
            max_num_seqs=8,
            kv_blocks=768,
            block_size=16,
            max_loras=2,
            lora_load_ms=200.0,
            speed=speed,
        )
        out.append((f"127.0.0.{11 + i}", config))
    return out


@dataclass(slots=True)
class Fleet:
    process: subprocess.Popen[bytes]
    urls: list[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(cmd: list[str], output=None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child process (no stdin; output to `output`, or inherited; `env` added to ours)."""
    full_env = {**os.environ, **env} if env else None
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=full_env)


async def start_fleet(cpus: str | None, python: str = sys.executable) -> Fleet:
    spec = [{"host": host, "config": dataclasses.asdict(config)} for host, config in fleet_configs()]
    cmd = [python, "-m", "bench.scheduling.fleet", "--spec", json.dumps(spec)]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    process = spawn(cmd)
    fleet = Fleet(process, [f"http://{host}:{PORT}" for host, _ in fleet_configs()])
    try:
        await wait_healthy(fleet.urls, "/health", within=20, process=process)
        await asyncio.sleep(0.2)
        if process.poll() is not None:  # an older fleet answered on these addresses, not this one
            raise RuntimeError(f"the fleet exited with {process.returncode} (addresses in use?)")
    except BaseException:
        fleet.stop()
        raise
    return fleet


async def wait_healthy(
    urls: list[str], path: str, within: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        for url in urls:
            while True:
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
                try:
                    async with session.get(url + path, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url}{path} not ready after {within}s")
                await asyncio.sleep(0.1)


async def _serve(spec: list[dict]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    try:
        for entry in spec:
            raw = dict(entry["config"])
            raw["loras"] = tuple(raw["loras"])
            servers.append(await start_simulator(SimConfig(**raw), entry["host"], PORT))
        await stop.wait()
    finally:
        for server in servers:
            await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduling.fleet")
    parser.add_argument("--spec", required=True, help="JSON list of {host, config}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import uvloop

    uvloop.run(_serve(json.loads(args.spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

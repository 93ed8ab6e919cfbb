import asyncio
import time

import pytest
from aiohttp import web

from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.scraper import Scraper
from kthena_router.endpoints.state import EndpointStates
from kthena_router.sim import SimConfig, start_simulator
from kthena_router.snapshot import Endpoint, EndpointKey


def endpoint(port: int, engine: str = "vllm", ip: str = "127.0.0.1") -> Endpoint:
    return Endpoint(EndpointKey(ip, port), ObjectRef("default", f"pod-{port}"), engine, f"{ip}:{port}")


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim():
    server = await start_simulator(
        SimConfig(model="base", loras=("adapter-a",), fake_waiting=9, fake_running=2, fake_kv_usage=0.5),
        "127.0.0.1", 0)
    yield server
    await server.close()


async def test_scraper_reads_a_simulator_into_endpoint_state(sim):
    states = EndpointStates(stale_after=2.0)
    updates = []
    scraper = Scraper(states, interval=0.02, on_update=lambda: updates.append(1))
    try:
        scraper.sync([endpoint(sim.port)])
        state = states.get(EndpointKey("127.0.0.1", sim.port))
        assert state is not None
        await wait_until(lambda: state.metered and state.models)
        assert (state.waiting, state.running, state.kv_usage) == (9.0, 2.0, 0.5)
        assert state.fresh(time.monotonic())
        assert state.models == {"base", "adapter-a"}
        assert state.adapters == {"adapter-a"}
        assert updates
    finally:
        await scraper.close()


async def test_endpoints_that_leave_stop_being_scraped_and_lose_their_state(sim):
    states = EndpointStates()
    scraper = Scraper(states, interval=0.02)
    try:
        scraper.sync([endpoint(sim.port)])
        await wait_until(lambda: states.get(EndpointKey("127.0.0.1", sim.port)).metered)
        scraper.sync([])
        assert scraper.endpoints == frozenset()
        assert states.get(EndpointKey("127.0.0.1", sim.port)) is None
    finally:
        await scraper.close()


async def test_failing_metrics_are_counted_and_the_state_goes_stale():
    hits = {"n": 0}

    async def metrics(request: web.Request) -> web.Response:
        hits["n"] += 1
        if hits["n"] <= 2:
            return web.Response(text="vllm:num_requests_waiting 1\n")
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    states = EndpointStates(stale_after=0.2)
    scraper = Scraper(states, interval=0.02)
    try:
        scraper.sync([endpoint(port)])
        state = states.get(EndpointKey("127.0.0.1", port))
        await wait_until(lambda: state.failures >= 3)
        assert state.metered
        assert "HTTP 500" in state.last_error
        await wait_until(lambda: not state.fresh(time.monotonic()))
    finally:
        await scraper.close()
        await runner.cleanup()


async def test_an_exposition_without_known_metrics_is_not_a_good_scrape():
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="process_cpu_seconds_total 1.0\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    states = EndpointStates()
    scraper = Scraper(states, interval=0.02)
    try:
        scraper.sync([endpoint(port, engine="sglang")])
        state = states.get(EndpointKey("127.0.0.1", port))
        await wait_until(lambda: state.failures >= 1)
        assert not state.metered
        assert "sglang" in state.last_error
    finally:
        await scraper.close()
        await runner.cleanup()


async def test_an_unreachable_endpoint_does_not_block_close():
    states = EndpointStates()
    scraper = Scraper(states, interval=0.02, timeout=0.2)
    scraper.sync([endpoint(1, ip="127.0.0.9")])
    state = states.get(EndpointKey("127.0.0.9", 1))
    await wait_until(lambda: state.failures >= 1)
    async with asyncio.timeout(2):
        await scraper.close()

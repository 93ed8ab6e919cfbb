import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.scraper import Scraper
from kthena_router.endpoints.state import EndpointStates
from kthena_router.scheduling.picker import InFlight
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


class MetricsServer:
    """A /metrics and /v1/models server on loopback whose answers the test changes; counts the GETs."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.hits = {"/metrics": 0, "/v1/models": 0}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> "MetricsServer":
        async def metrics(request: web.Request) -> web.Response:
            self.hits["/metrics"] += 1
            return web.Response(text=self.body)

        async def models(request: web.Request) -> web.Response:
            self.hits["/v1/models"] += 1
            return web.json_response({"object": "list", "data": [{"id": "base", "object": "model"}]})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/v1/models", models)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


IDLE = "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n"
BUSY = "vllm:num_requests_waiting 3\nvllm:num_requests_running 8\nvllm:kv_cache_usage_perc 0.5\n"
DATA = Path(__file__).parent / "data"


@pytest.fixture
async def server():
    srv = await MetricsServer(IDLE).start()
    yield srv
    await srv.close()


async def test_a_quiet_endpoint_is_read_ever_less_often_but_stays_fresh(server):
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=0.01, max_interval=0.16, models_interval=10)
    try:
        scraper.sync([endpoint(server.port)])
        target = scraper._targets[EndpointKey("127.0.0.1", server.port)]
        state = target.state
        await wait_until(lambda: target.delay == 0.16)
        assert state.fresh(time.monotonic())
        server.body = BUSY
        await wait_until(lambda: state.running == 8)
        assert target.delay == 0.01  # work there: back to the base interval
        server.body = IDLE
        await wait_until(lambda: target.delay == 0.16)
    finally:
        await scraper.close()


async def test_an_endpoint_with_work_is_read_every_interval(server):
    server.body = BUSY
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=0.01, max_interval=0.16, models_interval=10)
    try:
        scraper.sync([endpoint(server.port)])
        target = scraper._targets[EndpointKey("127.0.0.1", server.port)]
        await wait_until(lambda: target.state.scrapes >= 10)
        assert target.delay == 0.01
    finally:
        await scraper.close()


async def test_sending_work_to_a_quiet_endpoint_ends_its_wait_at_once(server):
    states = EndpointStates(stale_after=2.0)
    inflight = InFlight()
    scraper = Scraper(states, interval=0.01, max_interval=5.0, models_interval=10)
    inflight.on_busy = scraper.wake
    key = EndpointKey("127.0.0.1", server.port)
    try:
        scraper.sync([endpoint(server.port)])
        target = scraper._targets[key]
        await wait_until(lambda: target.delay >= 0.32)
        await wait_until(lambda: target.sleeper is not None)
        sleeper, scrapes = target.sleeper, target.state.scrapes
        inflight.acquire(key)
        assert sleeper.done() and target.delay == 0.01
        await wait_until(lambda: target.state.scrapes > scrapes)
        inflight.acquire(key)  # a second request in flight: no more waking
        inflight.release(key)
        inflight.release(key)
    finally:
        await scraper.close()


def test_in_flight_counts_report_only_an_endpoint_going_from_idle_to_busy():
    inflight = InFlight()
    busy: list[EndpointKey] = []
    inflight.on_busy = busy.append
    a, b = EndpointKey("10.0.0.1", 8000), EndpointKey("10.0.0.2", 8000)
    inflight.acquire(a)
    inflight.acquire(a)
    inflight.acquire(b)
    inflight.release(a)
    inflight.release(a)
    inflight.acquire(a)
    assert busy == [a, b, a]


async def test_an_unchanged_model_list_is_read_less_often(server):
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=0.01, max_interval=0.01, models_interval=0.02)
    try:
        scraper.sync([endpoint(server.port)])
        target = scraper._targets[EndpointKey("127.0.0.1", server.port)]
        await wait_until(lambda: target.models_delay == 0.02 * 5)
        assert target.state.models == {"base"}
    finally:
        await scraper.close()


async def test_latency_histograms_are_read_only_when_asked(server):
    server.body = (DATA / "vllm_v1.txt").read_text()
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=0.01, models_interval=10, read_latency=False)
    try:
        scraper.sync([endpoint(server.port)])
        state = states.get(EndpointKey("127.0.0.1", server.port))
        await wait_until(lambda: state.scrapes >= 2)
        assert (state.ttft, state.tpot) == (0.0, 0.0)
        assert state.running == 12.0
        scraper.read_latency = True
        await wait_until(lambda: state.ttft > 0 and state.tpot > 0)
    finally:
        await scraper.close()


async def test_a_rate_limit_stretches_the_busy_interval_with_the_number_of_busy_endpoints():
    servers = [await MetricsServer(BUSY).start() for _ in range(4)]
    states = EndpointStates(stale_after=2.0)
    scraper = Scraper(states, interval=0.01, max_interval=0.16, models_interval=10, max_rate=100)
    targets = []
    try:
        scraper.sync([endpoint(s.port) for s in servers])
        targets = [scraper._targets[EndpointKey("127.0.0.1", s.port)] for s in servers]
        await wait_until(lambda: all(t.busy for t in targets))
        assert scraper.busy_gap() == pytest.approx(0.04)  # 4 busy endpoints at 100 scrapes/s at most
        await wait_until(lambda: all(t.delay == pytest.approx(0.04) for t in targets))
        scraper.max_rate = 10  # 4 / 10 = 0.4 s would leave numbers older than the quiet endpoints' cap
        assert scraper.busy_gap() == 0.16
        scraper.max_rate = 100
        for s in servers[1:]:
            s.body = IDLE
        await wait_until(lambda: sum(t.busy for t in targets) == 1)
        assert scraper.busy_gap() == 0.01
        scraper.sync([endpoint(servers[1].port)])  # the busy one leaves: it no longer counts
        assert scraper._busy == 0
    finally:
        await scraper.close()
        for s in servers:
            await s.close()

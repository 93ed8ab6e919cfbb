"""Passive outlier detection seen from outside: an endpoint failing in a row stops getting traffic for the
ejection time, then gets it again; never more than the allowed share of a pool is left out, and a pool is
never emptied by it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.faults.backends import BODY, OK, ROUTE, Backend, Closed, hang, scene
from tests.faults.conftest import IPS


async def fail_500(reader, writer, request):
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")


async def answer_ok(reader, writer, request):
    writer.write(OK)


def prompt(i: int) -> dict:
    return {**BODY, "prompt": f"prompt {i}"}  # no cache affinity between requests


async def metrics(s) -> str:
    async with aiohttp.ClientSession() as session, session.get(s.router.metrics_url) as resp:
        return await resp.text()


async def test_an_endpoint_failing_in_a_row_is_left_out_then_tried_again(tmp_path, port):
    bad = Backend(IPS[0], port, fail_500)
    good = Backend(IPS[1], port)
    async with scene(tmp_path, [bad, good], outlier_consecutive_failures=2, outlier_base_ejection=0.5) as s:
        sent = 0
        while bad.requests < 2:
            status, _ = await s.post(prompt(sent))
            assert status in (200, 500)
            sent += 1
            assert sent < 40, "the failing endpoint was never picked"
        ejected_at = time.monotonic()
        during = 0
        while time.monotonic() - ejected_at < 0.3:  # well within the 0.5 s ejection
            assert (await s.post(prompt(sent + during)))[0] == 200
            during += 1
        assert bad.requests == 2 and during >= 3
        text = await metrics(s)
        assert f'kthena_router_endpoint_ejected{{endpoint="{IPS[0]}:{port}"}} 1.0' in text
        assert f'kthena_router_endpoint_ejections_total{{endpoint="{IPS[0]}:{port}"}} 1.0' in text
        bad.behaviour = answer_ok
        await asyncio.sleep(ejected_at + 0.6 - time.monotonic())
        for i in range(30):
            assert (await s.post(prompt(100 + i)))[0] == 200
        assert bad.requests > 2  # back in after the ejection time
        assert f'kthena_router_endpoint_ejected{{endpoint="{IPS[0]}:{port}"}} 0.0' in await metrics(s)


async def test_refused_connections_count_as_failures(tmp_path, port):
    good = Backend(IPS[1], port)
    async with scene(tmp_path, [Closed(IPS[0], port), good], outlier_consecutive_failures=2,
                     outlier_base_ejection=30.0) as s:
        retried = 0
        sent = 0
        while retried < 2:  # two refusals in a row: ejected
            assert (await s.post(prompt(sent)))[0] == 200
            sent += 1
            retried = sum(e["upstream_attempts"] == 2 for e in await s.access_log(sent))
            assert sent < 60, "the refusing endpoint was never picked"
        for _ in range(20):
            assert (await s.post(prompt(sent)))[0] == 200
            sent += 1
        entries = await s.access_log(sent)
        assert sum(e["upstream_attempts"] == 2 for e in entries) == 2  # no attempt at it once ejected


async def test_never_more_than_the_allowed_share_of_a_pool_is_left_out(tmp_path, port):
    a, b = Backend(IPS[0], port, fail_500), Backend(IPS[1], port, fail_500)
    async with scene(tmp_path, [a, b], outlier_consecutive_failures=1, outlier_base_ejection=30.0,
                     outlier_max_ejection_percent=50) as s:
        statuses = [(await s.post(prompt(i)))[0] for i in range(20)]
        assert statuses == [500] * 20  # the endpoints' own answers: the router never ran out of endpoints
        assert sorted((a.requests, b.requests)) == [1, 19]  # the first ejected is out; the second may not be


async def test_a_pool_of_one_failing_endpoint_keeps_getting_its_traffic(tmp_path, port):
    lone = Backend(IPS[0], port, fail_500)
    async with scene(tmp_path, [lone], outlier_consecutive_failures=1, outlier_base_ejection=30.0,
                     outlier_max_ejection_percent=100) as s:
        statuses = [(await s.post(prompt(i)))[0] for i in range(5)]
        assert statuses == [500] * 5 and lone.requests == 5  # failing open, not a 503


BACKEND_REQUEST_TIMEOUT = ROUTE + "    timeouts: {backendRequest: 300ms}\n"
TIMEOUTS = {
    "upstream-read-timeout": pytest.param(ROUTE, {"upstream_read_timeout": 0.3}),
    "route-backend-request-timeout": pytest.param(BACKEND_REQUEST_TIMEOUT, {}),
}


@pytest.mark.parametrize(("route", "settings"), TIMEOUTS.values(), ids=TIMEOUTS.keys())
async def test_timeouts_count_as_failures(tmp_path, port, route, settings):
    silent = Backend(IPS[0], port, hang)
    good = Backend(IPS[1], port)
    async with scene(tmp_path, [silent, good], route, outlier_consecutive_failures=2, outlier_base_ejection=30.0,
                     **settings) as s:
        sent = 0
        while silent.requests < 2:
            status, _ = await s.post(prompt(sent))
            assert status in (200, 504)
            sent += 1
            assert sent < 40, "the silent endpoint was never picked"
        for _ in range(10):
            assert (await s.post(prompt(sent)))[0] == 200
            sent += 1
        assert silent.requests == 2

"""Endpoints the router cannot connect to: refused, or never accepting. Nothing was sent, so another
endpoint is tried; with none left the client gets a 502."""

from __future__ import annotations

import time

from tests.faults.backends import BODY, Backend, Closed, Unaccepting, error_of, scene
from tests.faults.conftest import IPS

NO_OUTLIERS = {"outlier_consecutive_failures": 0}  # keep every endpoint in play


async def requests_until_one_is_retried(s, limit: int = 30) -> list[dict]:
    """Send requests (each with its own prompt, so no cache affinity) until the access log shows one that
    needed a second attempt; every one must have succeeded. Returns the log entries."""
    for i in range(limit):
        status, _ = await s.post({**BODY, "prompt": f"prompt {i}"})
        assert status == 200
        entries = await s.access_log(i + 1)
        if any(e["upstream_attempts"] == 2 for e in entries):
            return entries
    raise AssertionError(f"no request of {limit} was first sent to the failing endpoint")


async def test_a_refused_connection_is_retried_on_another_endpoint(tmp_path, port):
    good = Backend(IPS[1], port)
    async with scene(tmp_path, [Closed(IPS[0], port), good], **NO_OUTLIERS) as s:
        entries = await requests_until_one_is_retried(s)
        assert good.requests == len(entries)
        assert {e["selected_endpoint"] for e in entries} == {f"{IPS[1]}:{port}"}


async def test_with_every_endpoint_refusing_the_client_gets_a_502(tmp_path, port):
    async with scene(tmp_path, [Closed(IPS[0], port), Closed(IPS[1], port)], **NO_OUTLIERS) as s:
        status, body = await s.post()
        assert status == 502
        error = error_of(body)
        assert error["type"] == "upstream_error" and error["code"] == "upstream_error"
        [entry] = await s.access_log(1)
        assert entry["upstream_attempts"] == 2 and entry["status_code"] == 502


async def test_retries_stop_at_max_retries(tmp_path, port):
    closed = [Closed(ip, port) for ip in IPS]
    async with scene(tmp_path, closed, max_retries=1, **NO_OUTLIERS) as s:
        status, _ = await s.post()
        assert status == 502
        [entry] = await s.access_log(1)
        assert entry["upstream_attempts"] == 2


async def test_an_endpoint_slow_to_accept_is_given_up_after_the_connect_timeout(tmp_path, port):
    good = Backend(IPS[1], port)
    async with scene(tmp_path, [Unaccepting(IPS[0], port), good], connect_timeout=0.2, **NO_OUTLIERS) as s:
        entries = await requests_until_one_is_retried(s)
        assert good.requests == len(entries)


async def test_a_lone_endpoint_slow_to_accept_is_a_502_after_the_connect_timeout(tmp_path, port):
    async with scene(tmp_path, [Unaccepting(IPS[0], port)], connect_timeout=0.2, **NO_OUTLIERS) as s:
        start = time.monotonic()
        status, body = await s.post()
        took = time.monotonic() - start
        assert status == 502 and "timed out" in error_of(body)["message"]
        assert 0.2 <= took < 3.0

"""Hostile `model` values and odd JSON bodies sent through a running router: a 400 or the answer of the
endpoint, never a 5xx, a header injected upstream, a broken access log or a /metrics page that stops
rendering."""

from __future__ import annotations

import json
import logging
import math

import aiohttp
import orjson
import pytest

from tests.fuzz.wire import BOUNDED, Endpoint, router_for

REFUSED = {
    "lone_surrogate": b'{"model": "\\ud800", "prompt": "x"}',
    "nul": b'{"model": "m\\u0000", "prompt": "x"}',
    "crlf_header_injection": b'{"model": "m\\r\\nX-Injected: 1", "prompt": "x"}',
    "escape_sequence": b'{"model": "m\\u001b[2J", "prompt": "x"}',
    "c1_control": b'{"model": "m\\u0085", "prompt": "x"}',
    "too_long": b'{"model": "' + b"m" * 1025 + b'", "prompt": "x"}',
    "number": b'{"model": 7, "prompt": "x"}',
    "blank": b'{"model": " ", "prompt": "x"}',
    "not_an_object": b'["m"]',
    "not_json": b"model=m",
}
SERVED = {
    "non_ascii": ('{"model": "模型-7B", "prompt": "x"}'.encode(), "模型-7B"),
    "line_separator": (b'{"model": "m\\u2028", "prompt": "x"}', "m\u2028"),
    "astral_pair": (b'{"model": "\\ud83d\\ude00", "prompt": "x"}', "\U0001f600"),
    "longest": (b'{"model": "' + b"m" * 1024 + b'", "prompt": "x"}', "m" * 1024),
    "byte_order_mark": (b'\xef\xbb\xbf{"model": "m", "prompt": "x"}', "m"),
    "duplicate_model": (b'{"model": "first", "prompt": "x", "model": "second"}', "second"),
}


@pytest.fixture
async def setup(tmp_path, caplog):
    endpoint = await Endpoint().start()
    log_path = tmp_path / "access.log"
    router = await router_for(tmp_path, endpoint, access_log=True, access_log_format="json",
                              access_log_output=str(log_path))
    caplog.set_level(logging.ERROR, logger="kthena_router")
    yield router, endpoint
    await router.app.shutdown()
    await endpoint.stop()
    # Every request left one access-log line that parses, and nothing in the router logged an error.
    lines = log_path.read_text().splitlines()
    assert lines and all(orjson.loads(line)["path"] == "/v1/completions" for line in lines)
    assert not [r for r in caplog.records if r.name.startswith("kthena_router") and r.levelno >= logging.ERROR]


async def post(session, router, body: bytes) -> tuple[int, bytes]:
    async with session.post(router.url + "/v1/completions", data=body,
                            headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


async def test_hostile_models_are_refused_and_odd_ones_reach_the_endpoint_with_a_clean_header(setup):
    router, endpoint = setup
    async with aiohttp.ClientSession(timeout=BOUNDED) as session:
        for name, body in REFUSED.items():
            status, answer = await post(session, router, body)
            assert status == 400, (name, answer[:200])
            assert orjson.loads(answer)["error"]["code"] == "request_parsing"
        assert endpoint.seen == []
        for name, (body, model) in SERVED.items():
            status, answer = await post(session, router, body)
            assert status == 200, (name, answer[:200])
            head = endpoint.seen[-1].partition(b"\r\n\r\n")[0]
            assert b"\x00" not in head and b"X-Injected" not in head
            names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
            assert names.count(b"x-gateway-model-name") == 1 and len(names) == len(set(names))
            assert endpoint.seen[-1].endswith(body)  # forwarded byte for byte
            if model.isascii():
                assert b"\r\nX-Gateway-Model-Name: " + model.encode() + b"\r\n" in head + b"\r\n"
        async with session.get(router.metrics_url) as resp:
            assert resp.status == 200  # no label the router stored breaks the exposition
            text = await resp.text()
        assert "kthena_router_requests_total" in text


async def test_streaming_bodies_keep_what_json_loads_reads_when_usage_is_injected(setup):
    router, endpoint = setup
    big = 10 ** 30
    cases = [
        # Python model servers accept NaN, Infinity and integers beyond 64 bits; the re-encoded body keeps them.
        b'{"model": "m", "stream": true, "stream_options": {}, "temperature": NaN, "seed": %d, "x": -Infinity}'
        % big,
        '{"model": "m", "stream": true, "prompt": "é"}'.encode("utf-16"),
        '{"model": "m", "stream": true, "prompt": "é"}'.encode("utf-32-le"),
        b'\xef\xbb\xbf{"model": "m", "stream": true}',
    ]
    async with aiohttp.ClientSession(timeout=BOUNDED) as session:
        for body in cases:
            status, answer = await post(session, router, body)
            assert status == 200, answer[:200]
            sent = json.loads(endpoint.seen[-1].partition(b"\r\n\r\n")[2])
            original = json.loads(body)
            assert sent["stream_options"]["include_usage"] is True
            rest = {k: v for k, v in sent.items() if k != "stream_options"}
            expected = {k: v for k, v in original.items() if k != "stream_options"}
            assert repr(rest) == repr(expected)  # repr: NaN compares unequal to itself
    assert math.isnan(json.loads(endpoint.seen[0].partition(b"\r\n\r\n")[2])["temperature"])
    assert f'"seed":{big}'.encode() in endpoint.seen[0]


async def test_a_nested_streaming_body_that_cannot_be_re_encoded_is_forwarded_unchanged(setup):
    router, endpoint = setup
    body = b'{"model": "m", "stream": true, "stream_options": {}, "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    async with aiohttp.ClientSession(timeout=BOUNDED) as session:
        status, answer = await post(session, router, body)
    assert status == 200, answer[:200]
    assert endpoint.seen[-1].endswith(body)

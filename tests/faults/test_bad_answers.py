"""Endpoints that answer badly: a response that is not valid HTTP is a 502 from the router; a well-formed
5xx is the endpoint's own answer and reaches the client unchanged."""

from __future__ import annotations

import aiohttp
import pytest

from tests.faults.backends import BODY, Backend, error_of, hang, scene
from tests.faults.conftest import IPS

MALFORMED = {
    "status-not-a-number": b"HTTP/1.1 two hundred OK\r\nContent-Length: 0\r\n\r\n",
    "not-http-at-all": b"hello there\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nthis is no header\r\nContent-Length: 2\r\n\r\n{}",
    "content-length-not-a-number": b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_response_is_a_502(tmp_path, port, answer):
    async def malformed(reader, writer, request):
        writer.write(answer)
        await hang(reader, writer, request)  # the router must see the fault in what came, not wait for more

    backend = Backend(IPS[0], port, malformed)
    async with scene(tmp_path, [backend], outlier_consecutive_failures=0) as s:
        status, body = await s.post()
        assert status == 502 and error_of(body)["code"] == "upstream_error"
        assert backend.requests == 1


FAILURES = {
    "500-json": (500, b"Content-Type: application/json\r\n", b'{"error":{"message":"boom","code":500}}'),
    "503-retry-after": (503, b"Content-Type: application/json\r\nRetry-After: 7\r\n", b'{"error":{"message":"busy"}}'),
    "502-plain-text": (502, b"Content-Type: text/plain\r\n", b"bad gateway, says the model server"),
}


@pytest.mark.parametrize(("status", "headers", "payload"), FAILURES.values(), ids=FAILURES.keys())
async def test_an_endpoint_5xx_passes_through_unchanged(tmp_path, port, status, headers, payload):
    async def fail(reader, writer, request):
        writer.write(b"HTTP/1.1 %d Whatever\r\n%sContent-Length: %d\r\n\r\n%s" % (status, headers, len(payload),
                                                                                    payload))

    async with scene(tmp_path, [Backend(IPS[0], port, fail)], outlier_consecutive_failures=0) as s:
        async with aiohttp.ClientSession() as session, session.post(s.url, json=BODY) as resp:
            assert resp.status == status
            assert await resp.read() == payload
            for line in headers.split(b"\r\n")[:-1]:
                name, value = line.decode().split(": ")
                assert resp.headers[name] == value

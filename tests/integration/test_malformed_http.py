"""Bytes that are not valid HTTP get a 4xx with an error object and one quiet log line, never a traceback."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from tests.integration.harness import free_port, gateway, start_router, write_manifests

CASES = {
    "not_http": b"GARBAGE\r\n\r\n",
    "content_length_and_chunked": (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "header_too_long": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
    "too_many_headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n",
    "bad_content_length": b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
}


@pytest.fixture
async def router(tmp_path):
    port = free_port()
    write_manifests(tmp_path, "c.yaml", gateway("gw", port))
    running = await start_router(tmp_path, port=port)
    yield running
    await running.app.shutdown()


@pytest.mark.parametrize("name", sorted(CASES))
async def test_malformed_requests_get_an_error_object_and_no_traceback(router, name, caplog):
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    with caplog.at_level(logging.DEBUG):
        writer.write(CASES[name])
        async with asyncio.timeout(5):
            response = await reader.read()  # the router closes the connection after the error
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    too_large = name in ("header_too_long", "too_many_headers")
    assert head.split(b" ", 2)[1] == (b"431" if too_large else b"400"), head
    error = orjson.loads(body)["error"]
    assert error["code"] == ("request_header_too_large" if too_large else "bad_http_request")
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

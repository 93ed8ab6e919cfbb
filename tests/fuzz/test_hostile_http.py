"""Hostile HTTP over raw sockets: each case gets a 4xx error object or a closed connection, never a 5xx
from the router, never a hang, never a request smuggled past it; other clients keep being served."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.faults.backends import Backend, router_for
from tests.faults.conftest import IPS
from tests.integration.harness import free_port

LIMIT = 4096
GOOD = b'{"model":"m","prompt":"hi"}'


def post(body: bytes, *headers: bytes, length: bool = True) -> bytes:
    lines = [b"POST /v1/completions HTTP/1.1", b"Host: x", b"Content-Type: application/json", *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size_line: bytes | None = None) -> bytes:
    size = size_line if size_line is not None else b"%x" % len(body)
    return post(size + b"\r\n" + body + b"\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", length=False)


@pytest.fixture
async def setup(tmp_path):
    port = free_port(*IPS)
    backend = await Backend(IPS[0], port).start()
    router = await router_for(tmp_path, [backend], max_body_bytes=LIMIT, max_connections=40, max_streams=30,
                              header_read_timeout=0.5, body_read_timeout=0.5, max_header_bytes=8192,
                              max_headers=50)
    yield router, backend
    await router.app.shutdown()
    await backend.stop()


async def exchange(router, raw: bytes, *, read_timeout: float = 5.0) -> tuple[int | None, bytes]:
    """The status of the first response (None when the router closed without one) and its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    try:
        writer.write(raw)
        async with asyncio.timeout(read_timeout):
            data = await reader.read()  # every hostile case ends with the router closing
    except ConnectionError:
        data = b""
    finally:
        writer.close()
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_refused(status: int | None, body: bytes, *allowed: int) -> None:
    if status is None:
        return  # a closed connection is an acceptable answer to garbage
    assert status in allowed, (status, body[:200])
    assert orjson.loads(body)["error"]["type"] == "invalid_request_error"


async def test_bodies_around_the_limit_with_length_and_chunked(setup):
    router, backend = setup
    pad = lambda n: b'{"model":"m","prompt":"' + b"a" * (n - 25) + b'"}'  # noqa: E731
    for size, expected in ((LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413)):
        body = pad(size)
        assert len(body) == size
        reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
        writer.write(post(body, b"Connection: close"))
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert response.split(b" ", 2)[1] == str(expected).encode(), (size, response[:100])
        status, _ = await exchange(router, chunked(body).replace(b"Host: x", b"Host: x\r\nConnection: close"))
        assert status == expected or (status is None and expected == 413)
    assert backend.requests == 4


@pytest.mark.parametrize("raw", [
    chunked(GOOD, b"zz"),  # not hex
    chunked(GOOD, b"-1"),
    chunked(GOOD, b"fffffffffffffffffff"),  # overflows
    post(GOOD, b"Transfer-Encoding: chunked"),  # CL and TE together
    post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", b"Content-Length: 5", length=False),
    post(GOOD, b"Content-Length: 3"),  # two lengths that differ
    post(GOOD, b"Transfer-Encoding: chunked, identity", length=False),
    post(GOOD, b"X-Folded: a\r\n  b"),  # obs-fold
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS hello on a plain port
])
async def test_malformed_and_smuggling_requests_are_refused_and_nothing_extra_reaches_the_endpoint(setup, raw):
    router, backend = setup
    smuggled = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    status, body = await exchange(router, raw + smuggled)
    assert_refused(status, body, 400, 404, 413, 431)
    assert backend.requests == 0


async def test_oversized_heads_get_431(setup):
    router, _ = setup
    status, body = await exchange(router, post(GOOD, b"X-Big: " + b"a" * 10_000))
    assert status == 431 and orjson.loads(body)["error"]["code"] == "request_header_too_large"
    status, body = await exchange(router, post(GOOD, *(b"X-%d: 1" % i for i in range(60))))
    assert status == 431
    status, body = await exchange(router, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 431


async def test_slow_heads_and_stalled_bodies_are_cut_off(setup):
    router, backend = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    started = time.monotonic()
    try:
        for byte in post(GOOD):  # one byte every 50 ms: the head takes longer than its 0.5 s
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
            if reader.at_eof() or writer.is_closing():
                break
    except ConnectionError:
        pass
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:  # reset, or the pipe broken by our last write
        data = b""
    writer.close()
    assert time.monotonic() - started < 3
    assert not data or data.split(b" ", 2)[1] == b"408"
    status, body = await exchange(router, post(GOOD, length=False).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 100\r\n\r\n", 1)[:-10])
    assert status == 408 and orjson.loads(body)["error"]["code"] == "client_timeout"
    assert backend.requests == 0


async def test_connection_and_stream_limits(setup):
    router, backend = setup
    held = [await asyncio.open_connection("127.0.0.1", router.settings.port) for _ in range(40)]
    await asyncio.sleep(0.1)
    status, body = await exchange(router, post(GOOD))
    assert status == 503 and orjson.loads(body)["error"]["code"] == "listener_overloaded"
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.2)
    release = asyncio.Event()

    async def hold(reader, writer, request):
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    backend.behaviour = hold
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def complete():
            async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                return resp.status
        busy = [asyncio.create_task(complete()) for _ in range(30)]
        async with asyncio.timeout(5):
            while router.app.runtime_stats()["streams"] < 30:
                await asyncio.sleep(0.02)
        async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
            assert resp.status == 503 and (await resp.json())["error"]["code"] == "listener_overloaded"
        release.set()
        assert await asyncio.gather(*busy) == [200] * 30


async def test_a_host_or_absolute_target_cannot_make_the_router_dial_elsewhere(setup):
    router, backend = setup
    contacted = []
    trap_port = free_port("127.0.0.9")
    trap = await asyncio.start_server(lambda r, w: contacted.append(1) or w.close(), "127.0.0.9", trap_port)
    try:
        for raw in (post(GOOD).replace(b"Host: x", b"Host: 127.0.0.9:%d" % trap_port),
                    post(GOOD).replace(b"POST /v1/completions", b"POST http://127.0.0.9:%d/v1/completions" % trap_port)):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
            writer.write(raw)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
            assert head.split(b" ", 2)[1] in (b"200", b"404")
        assert not contacted and backend.requests >= 1
    finally:
        trap.close()


async def test_other_clients_are_served_while_hostile_ones_attack(setup):
    router, _ = setup

    async def attacker(i: int) -> None:
        raws = [post(GOOD)[:20], b"\x00" * 500 + b"\r\n\r\n", post(GOOD, b"X-Big: " + b"a" * 9000)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
            writer.write(raws[i % 3])
            await asyncio.wait_for(reader.read(), 3)
            writer.close()
        except (ConnectionError, TimeoutError):
            pass

    async def well_behaved(session, n: int) -> list[float]:
        out = []
        for _ in range(n):
            began = time.perf_counter()
            async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                assert resp.status == 200
                await resp.read()
            out.append(time.perf_counter() - began)
        return out

    async with aiohttp.ClientSession() as session:
        before = await well_behaved(session, 20)
        attack = [asyncio.create_task(attacker(i)) for i in range(20)]
        during = await well_behaved(session, 40)
        await asyncio.gather(*attack)
    during.sort()
    print(f"well-behaved p50 before {sorted(before)[10] * 1e3:.1f} ms, during p50 {during[20] * 1e3:.1f} ms "
          f"p99 {during[-1] * 1e3:.1f} ms")
    assert during[-1] < 1.0

"""Hostile HTTP over raw sockets: each case gets a 4xx error object or a closed connection, never a 5xx
from the router, never a hang, never a request smuggled past it; other clients keep being served."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.fuzz.wire import BOUNDED, GOOD, OK, SMUGGLED, Endpoint, chunked, post, router_for, send_raw
from tests.integration.harness import free_port

LIMIT = 4096


async def start(tmp_path, **overrides):
    endpoint = await Endpoint().start()
    limits = dict(max_body_bytes=LIMIT, max_connections=40, max_streams=30, header_read_timeout=0.5,
                  body_read_timeout=0.5, max_header_bytes=8192, max_headers=50)
    router = await router_for(tmp_path, endpoint, **{**limits, **overrides})
    return router, endpoint


@pytest.fixture
async def setup(tmp_path):
    router, endpoint = await start(tmp_path)
    yield router, endpoint
    await router.app.shutdown()
    await endpoint.stop()


async def exchange(router, *parts: bytes, pause: float = 0.0, read_timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Send `parts` (with `pause` between them) and read until the router closes: the status of the first
    response (None when the router closed without one) and everything after its head."""
    # Every hostile case ends with the router closing; `read_timeout` only bounds a failing one.
    data = await send_raw(router.settings.port, *parts, pause=pause, read_timeout=read_timeout)
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def first_body(rest: bytes) -> bytes:
    """The body of the first response, without what a pipelined answer may have appended."""
    end = rest.find(b"HTTP/1.1 ")
    return rest if end < 0 else rest[:end]


def assert_refused(status: int | None, body: bytes, *allowed: int, code: str | None = None) -> None:
    if status is None:
        return  # a closed connection is an acceptable answer to garbage
    assert status in allowed, (status, body[:200])
    error = orjson.loads(first_body(body))["error"]
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code, error


def pad(size: int) -> bytes:
    body = b'{"model":"m","prompt":"' + b"a" * (size - 25) + b'"}'
    assert len(body) == size
    return body


async def test_bodies_around_the_limit_with_length_and_chunked(setup):
    router, endpoint = setup
    for size, expected in ((LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413)):
        body = pad(size)
        status, rest = await exchange(router, post(body, b"Connection: close"))
        assert status == expected, (size, rest[:200])
        in_pieces = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                             for i in range(0, size, 1000)) + b"0\r\n\r\n"
        for raw in (chunked(body, None, b"Connection: close"),
                    post(in_pieces, b"Transfer-Encoding: chunked", b"Connection: close", length=False)):
            status, rest = await exchange(router, raw)
            assert status == expected or (status is None and expected == 413), (size, status)
        if expected == 413 and status is not None:
            assert_refused(status, rest, 413, code="request_too_large")
    assert len(endpoint.seen) == 6


async def test_an_announced_length_over_the_limit_is_refused_without_waiting_for_the_body(setup):
    router, endpoint = setup
    for extra in (b"", b"Expect: 100-continue"):
        head = post(b"", *([extra] if extra else []), length=False)[:-2] + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
        writer.write(head)
        async with asyncio.timeout(5):
            response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 413 "), response[:100]  # no "100 Continue" first, no 408
        assert orjson.loads(response.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"
    assert endpoint.seen == []


# Each is refused, and the complete request sent after it on the same connection is never parsed.
MALFORMED = {
    "chunk_size_not_hex": chunked(GOOD, b"zz"),
    "chunk_size_negative": chunked(GOOD, b"-1"),
    "chunk_size_overflows": chunked(GOOD, b"fffffffffffffffffff"),
    "chunk_size_with_space": chunked(GOOD, b"1b "),
    "chunk_extension_bare_lf": post(b"1b;a\n" + GOOD + b"\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", length=False),
    "chunk_longer_than_its_size": chunked(GOOD, b"5"),
    "chunk_without_crlf": post(b"1b\r\n" + GOOD + b"0\r\n\r\n", b"Transfer-Encoding: chunked", length=False),
    "cl_then_te": post(b"0\r\n\r\n" + GOOD, b"Transfer-Encoding: chunked"),
    "te_then_cl": post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", b"Content-Length: 5", length=False),
    "two_lengths_that_differ": post(GOOD, b"Content-Length: 3"),
    "length_list": post(GOOD, b"Content-Length: %d, 3" % len(GOOD), length=False),
    "length_with_plus": post(GOOD, b"Content-Length: +%d" % len(GOOD), length=False),
    "length_in_hex": post(GOOD, b"Content-Length: 0x1b", length=False),
    "length_non_ascii_digit": post(GOOD, b"Content-Length: \xb2\xb7", length=False),
    "length_overflows": post(GOOD, b"Content-Length: 99999999999999999999999", length=False),
    "te_chunked_identity": post(GOOD, b"Transfer-Encoding: chunked, identity", length=False),
    "te_identity": post(GOOD, b"Transfer-Encoding: identity", length=False),
    "te_xchunked": chunked(GOOD).replace(b"Transfer-Encoding: chunked", b"Transfer-Encoding: xchunked"),
    "te_space_before_colon": chunked(GOOD).replace(b"Transfer-Encoding:", b"Transfer-Encoding :"),
    "te_vertical_tab": chunked(GOOD).replace(b"Transfer-Encoding: ", b"Transfer-Encoding: \x0b"),
    "te_twice": chunked(GOOD, None, b"Transfer-Encoding: chunked"),
    "trailer_with_length": post(b"1b\r\n" + GOOD + b"\r\n0\r\nContent-Length: 5\r\n\r\n",
                                b"Transfer-Encoding: chunked", length=False),
    "obs_fold": post(GOOD, b"X-Folded: a\r\n  b"),
    "obs_fold_of_te": post(b"0\r\n\r\n", b"Transfer-Encoding: identity\r\n chunked", length=False),
    "nul_in_header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    "control_in_header": post(GOOD, b"X-A: a\x01b"),
    "nul_in_target": post(GOOD, target=b"/v1/\x00completions"),
    "space_in_target": post(GOOD, target=b"/v1/comp letions"),
    "empty_header_name": post(GOOD, b": v"),
    "space_in_header_name": post(GOOD, b"X A: v"),
    "invalid_method_token": b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "lowercase_method": post(GOOD).replace(b"POST", b"post", 1),
    "unknown_method": post(GOOD).replace(b"POST", b"FOO", 1),
    "version_9_9": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "version_garbage": b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
    "h2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: x\n\n",
    "bare_cr": post(GOOD).replace(b"\r\n", b"\r"),
    "tls_hello_on_plain_port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
    "binary_garbage": bytes(range(256)) + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_and_smuggling_requests_are_refused_and_nothing_reaches_the_endpoint(setup, name):
    router, endpoint = setup
    status, body = await exchange(router, MALFORMED[name] + SMUGGLED)
    assert_refused(status, body, 400, 413, 431)
    assert endpoint.seen == []


async def test_the_smuggling_check_sees_a_request_pipelined_after_a_valid_one(setup):
    """The control for the test above: a pipelined request does reach the endpoint, so counting works."""
    router, endpoint = setup
    status, _ = await exchange(router, post(GOOD) + SMUGGLED.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    assert status == 200 and len(endpoint.seen) == 2 and endpoint.smuggled == 1


@pytest.mark.parametrize("upgrade", [
    pytest.param((b"Connection: Upgrade", b"Upgrade: h2c"), id="h2c"),
    pytest.param((b"Connection: keep-alive, Upgrade", b"Upgrade: websocket"), id="websocket"),
    pytest.param((b"Upgrade: websocket",), id="upgrade_without_connection_token"),
])
async def test_an_upgrade_header_cannot_turn_a_body_into_a_request(setup, upgrade):
    router, endpoint = setup
    raw = post(SMUGGLED, *upgrade)  # a body that is itself a complete request
    head, _, body = raw.partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    data = b""
    try:
        writer.write(head + b"\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.write(body)
        async with asyncio.timeout(1.0):  # the connection may stay open: keep-alive is not asked to end
            while chunk := await reader.read(65536):
                data += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    assert endpoint.smuggled == 0
    # Upgrades are not offered: the request is an ordinary POST whose body is not JSON.
    assert data.startswith(b"HTTP/1.1 400 ") and b'"request_parsing"' in data, data[:300]


@pytest.mark.parametrize("raw", [post(GOOD, b"Host: other", b"Connection: close"),
                                 post(GOOD, b"Connection: close").replace(b"Host: x\r\n", b"")],
                         ids=["two_hosts", "no_host"])
async def test_an_http11_request_without_exactly_one_host_is_refused(setup, raw):
    router, endpoint = setup
    status, body = await exchange(router, raw)
    assert status == 400 and endpoint.seen == []
    assert_refused(status, body, 400, code="bad_http_request")


async def test_trailer_fields_never_reach_the_endpoint_as_headers(setup):
    router, endpoint = setup
    trailers = b"X-Trailer-Injected: 1\r\nHost: elsewhere\r\nX-Gateway-Model-Name: other\r\n"
    body = b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(GOOD), GOOD, trailers)
    status, _ = await exchange(router, post(body, b"Transfer-Encoding: chunked", b"Connection: close", length=False))
    assert status in (200, 400)
    for request in endpoint.seen:
        head = request.partition(b"\r\n\r\n")[0]
        assert b"X-Trailer-Injected" not in head and b"elsewhere" not in head and b": other" not in head


async def test_the_endpoint_sees_only_the_model_header_the_router_set(setup):
    router, endpoint = setup
    status, _ = await exchange(router, post(GOOD, b"X-Gateway-Model-Name: other", b"Connection: close"))
    assert status == 200
    head = endpoint.seen[-1].partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"x-gateway-model-name:") == 1 and b"x-gateway-model-name: m\r\n" in head + b"\r\n"


async def test_a_chunk_extension_that_never_ends_is_cut_off(setup):
    """Extension bytes are not body bytes: they neither count as progress nor grow without bound."""
    router, endpoint = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    writer.write(post(b"1b;ext=", b"Transfer-Encoding: chunked", length=False))
    answer = asyncio.create_task(reader.read())
    started = time.monotonic()
    try:
        async with asyncio.timeout(5):
            while not answer.done() and not writer.is_closing():
                writer.write(b"a" * 10_000)
                await asyncio.sleep(0.05)
            data = await answer
    except ConnectionError:
        data = b""
    finally:
        answer.cancel()
        writer.close()
    assert time.monotonic() - started < 3
    assert not data or data.split(b" ", 2)[1] in (b"400", b"408", b"413", b"431"), data[:100]
    assert endpoint.seen == []


async def test_thousands_of_pipelined_requests_are_answered_in_order(setup):
    router, _ = setup
    count = 3000
    one = b"GET /healthz?n=%d HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = b"".join(one % i for i in range(count - 1)) + b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, rest = await exchange(router, raw, read_timeout=10)
    assert status == 200
    assert rest.count(b"HTTP/1.1 200 ") == count - 1 and rest.endswith(b'{"message":"router is ready"}')


async def test_oversized_heads_get_431_and_heads_at_the_limits_are_served(setup):
    router, endpoint = setup
    for raw in (post(GOOD, b"X-Big: " + b"a" * 10_000),
                post(GOOD, *(b"X-%d: 1" % i for i in range(60))),
                b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                post(GOOD, *(b"X-%d: " % i + b"a" * 400 for i in range(30)))):  # many lines, over in bytes
        status, body = await exchange(router, raw + SMUGGLED)
        assert status == 431, (status, body[:200])
        assert_refused(status, body, 431, code="request_header_too_large")
    assert endpoint.seen == []
    for raw in (post(GOOD, b"Connection: close", *(b"X-%d: 1" % i for i in range(50 - 4))),  # 50 lines
                post(GOOD, b"Connection: close", b"X-Big: " + b"a" * 7000)):
        status, body = await exchange(router, raw)
        assert status == 200, (status, body[:200])
    assert len(endpoint.seen) == 2


async def test_a_head_sent_one_byte_per_tenth_second_is_cut_off_after_the_header_timeout(setup):
    router, endpoint = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    started = time.monotonic()
    answer = asyncio.create_task(reader.read())
    try:
        async with asyncio.timeout(5):
            for byte in post(GOOD):  # about 12 s at this pace; the head timeout is 0.5 s
                if answer.done() or writer.is_closing():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)
            data = await answer
    except ConnectionError:  # reset, or the pipe broken by our last write
        data = b""
    finally:
        writer.close()
    assert time.monotonic() - started < 3
    assert not data or (data.startswith(b"HTTP/1.1 408 ") and
                        orjson.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "client_timeout")
    assert endpoint.seen == []


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(setup):
    router, _ = setup
    reader, writer = await asyncio.open_connection("127.0.0.1", router.settings.port)
    started = time.monotonic()
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    assert data in (b"",) or data.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_body_that_stalls_is_cut_off_with_408(setup, framing):
    router, endpoint = setup
    if framing == "length":
        raw = post(GOOD, length=False)[:-len(GOOD) - 2] + b"Content-Length: 100\r\n\r\n" + GOOD[:10]
    else:
        raw = post(b"1b\r\n" + GOOD[:10], b"Transfer-Encoding: chunked", length=False)
    started = time.monotonic()
    status, body = await exchange(router, raw)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "client_timeout"
    assert time.monotonic() - started < 3
    assert endpoint.seen == []


async def test_a_body_sent_slowly_but_steadily_is_served(setup):
    """The body timeout bounds each pause, not the whole upload."""
    router, endpoint = setup
    head, _, body = post(pad(400), b"Connection: close").partition(b"\r\n\r\n")
    pieces = [body[i:i + 50] for i in range(0, len(body), 50)]  # 8 pieces, 0.2 s apart: 1.4 s in all
    status, rest = await exchange(router, head + b"\r\n\r\n", *pieces, pause=0.2)
    assert status == 200, rest[:200]
    assert len(endpoint.seen) == 1


async def test_connections_over_the_limit_get_503_and_are_closed(tmp_path):
    router, endpoint = await start(tmp_path, max_connections=5, header_read_timeout=10)
    try:
        held = [await asyncio.open_connection("127.0.0.1", router.settings.port) for _ in range(5)]
        await asyncio.sleep(0.1)
        status, body = await exchange(router, post(GOOD))
        assert status == 503 and orjson.loads(body)["error"]["code"] == "listener_overloaded"
        reader, writer = held.pop()
        writer.close()
        await asyncio.sleep(0.2)
        status, body = await exchange(router, post(GOOD, b"Connection: close"))  # a slot is free again
        assert status == 200, body[:200]
        for reader, writer in held:  # the held connections were never disturbed
            writer.write(post(GOOD, b"Connection: close"))
            async with asyncio.timeout(5):
                assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            writer.close()
        assert len(endpoint.seen) == 5
    finally:
        await router.app.shutdown()
        await endpoint.stop()


async def test_requests_over_the_stream_limit_get_503_with_an_error_object(tmp_path):
    router, endpoint = await start(tmp_path, max_streams=2)
    release = asyncio.Event()

    async def hold(writer, request):
        await release.wait()
        writer.write(OK)

    endpoint.behaviour = hold
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=BOUNDED) as session:
            async def complete() -> int:
                async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                    await resp.read()
                    return resp.status

            busy = [asyncio.create_task(complete()) for _ in range(2)]
            async with asyncio.timeout(5):
                while len(endpoint.seen) < 2:
                    await asyncio.sleep(0.02)
            async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "listener_overloaded"
            release.set()
            async with asyncio.timeout(5):
                assert await asyncio.gather(*busy) == [200, 200]
            async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                assert resp.status == 200  # the slots were given back
    finally:
        release.set()
        await router.app.shutdown()
        await endpoint.stop()


async def test_a_host_or_absolute_target_cannot_make_the_router_dial_elsewhere(setup):
    router, endpoint = setup
    contacted = []
    trap_port = free_port("127.0.0.9")
    trap = await asyncio.start_server(lambda r, w: contacted.append(1) or w.close(), "127.0.0.9", trap_port)
    elsewhere = b"127.0.0.9:%d" % trap_port
    try:
        for raw in (post(GOOD).replace(b"Host: x", b"Host: " + elsewhere),
                    post(GOOD, target=b"http://" + elsewhere + b"/v1/completions"),
                    post(GOOD, target=b"http://user@" + elsewhere + b"/v1/completions"),
                    post(GOOD, b"X-Forwarded-Host: " + elsewhere, b"Forwarded: host=" + elsewhere),
                    post(GOOD, target=elsewhere),  # authority-form
                    b"CONNECT " + elsewhere + b" HTTP/1.1\r\nHost: " + elsewhere + b"\r\n\r\n"):
            status, body = await exchange(router, raw.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            assert status is None or status < 500, (raw[:80], status, body[:200])
        assert not contacted and len(endpoint.seen) >= 1
    finally:
        trap.close()


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def test_other_clients_are_served_while_hostile_ones_attack(setup):
    router, _ = setup
    port = router.settings.port
    stop = asyncio.Event()
    attempts = [0]

    async def attacker(i: int) -> None:
        kind = i % 4
        while not stop.is_set():
            attempts[0] += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                answer = asyncio.create_task(reader.read())
                try:
                    if kind == 0:  # slowloris: a head that never ends
                        for byte in post(GOOD):
                            if stop.is_set() or answer.done():
                                break
                            writer.write(bytes([byte]))
                            await asyncio.sleep(0.05)
                    elif kind == 1:  # garbage
                        writer.write(bytes(range(256)) * 4 + b"\r\n\r\n")
                    elif kind == 2:  # an oversized head
                        writer.write(post(GOOD, b"X-Big: " + b"a" * 9000))
                    else:  # a body that stalls
                        writer.write(post(GOOD, length=False)[:-len(GOOD) - 2] + b"Content-Length: 900\r\n\r\n{")
                    async with asyncio.timeout(3):
                        await answer
                finally:
                    answer.cancel()
                    writer.close()
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(0.01)

    async def well_behaved(session, *, count: int | None = None, until: asyncio.Event | None = None) -> list[float]:
        out = []
        while (count is not None and len(out) < count) or (until is not None and not until.is_set()):
            began = time.perf_counter()
            async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
                assert resp.status == 200
                await resp.read()
            out.append(time.perf_counter() - began)
        return out

    async with aiohttp.ClientSession(timeout=BOUNDED) as session:
        before = await well_behaved(session, count=50)
        attack = [asyncio.create_task(attacker(i), name=f"attacker-{i}") for i in range(20)]
        asyncio.get_running_loop().call_later(1.5, stop.set)
        during = await well_behaved(session, until=stop)
        async with asyncio.timeout(5):
            await asyncio.gather(*attack)
    print(f"well-behaved client: before p50 {percentile(before, 0.5) * 1e3:.1f} ms "
          f"p99 {percentile(before, 0.99) * 1e3:.1f} ms; during {attempts[0]} hostile connections "
          f"p50 {percentile(during, 0.5) * 1e3:.1f} ms p99 {percentile(during, 0.99) * 1e3:.1f} ms "
          f"({len(during)} requests)")
    assert len(during) >= 20 and percentile(during, 0.99) < 1.0

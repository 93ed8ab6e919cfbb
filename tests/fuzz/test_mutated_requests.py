"""Valid requests with random damage (seeded, so every run sends the same bytes) through a running router:
whatever arrives, the answer is a response below 500 or a closed connection, within the timeouts, with no
error logged, and the router is idle and serving afterwards."""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp
import orjson
import pytest

from tests.fuzz.wire import BOUNDED, GOOD, Endpoint, chunked, post, router_for, send_raw, settled

SEED = 20261128
CASES = 300
SEEDS = [
    post(GOOD, b"Connection: close"),
    post(b'{"model":"m","stream":true,"prompt":"x"}', b"X-Request-Id: abc"),
    chunked(GOOD, None, b"Connection: close"),
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"HEAD /healthz HTTP/1.0\r\n\r\n",
    post(GOOD, b"Expect: 100-continue", target=b"http://x/v1/chat/completions?a=%41&b"),
]
HOSTILE_BYTES = b"\x00\r\n \t:;,\x7f\x80\xff0-+%/?#@\\\"'{}[]"
HOSTILE_LINES = [
    b"Transfer-Encoding: chunked", b"Content-Length: 0", b"Content-Length: 99999", b"Content-Length: -1",
    b"Expect: 100-continue", b"Connection: Upgrade", b"Upgrade: h2c", b"Connection: keep-alive",
    b"Host: 127.0.0.9:1", b"Transfer-Encoding: gzip", b"X-Request-Id: \xff\xfe", b" folded", b"Content-Type: ",
    b"Authorization: Bearer \x00", b"X-Gateway-Inference-Objective: ../../x", b"test-epp-endpoint-selection: ;;",
]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a byte that means something to a parser
            data[at:at] = bytes([rng.choice(HOSTILE_BYTES)])
        elif op == 2 and data:  # delete a run
            del data[at:at + rng.randint(1, 4)]
        elif op == 3:  # add a header line
            head_end = data.find(b"\r\n") + 2 or len(data)
            data[head_end:head_end] = rng.choice(HOSTILE_LINES) + b"\r\n"
        elif op == 4:  # a bare LF or CR somewhere
            where = data.find(b"\r\n", at)
            if where >= 0:
                data[where:where + 2] = rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"])
        elif op == 5:  # cut short
            del data[at:]
        elif op == 6:  # repeat a slice
            data[at:at] = data[at:at + rng.randint(1, 40)] * rng.randint(2, 50)
        else:  # a second request behind it
            data += rng.choice(SEEDS)
    return bytes(data)


CORPUS = [mutate(rng, rng.choice(SEEDS)) for rng in [random.Random(SEED)] for _ in range(CASES)]


@pytest.fixture
async def setup(tmp_path, caplog):
    endpoint = await Endpoint().start()
    router = await router_for(tmp_path, endpoint, header_read_timeout=0.5, body_read_timeout=0.5,
                              keepalive_timeout=0.5, max_body_bytes=4096)
    caplog.set_level(logging.WARNING, logger="kthena_router")
    yield router, caplog
    await router.app.shutdown()
    await endpoint.stop()


async def send(port: int, raw: bytes) -> bytes:
    return await send_raw(port, raw, read_timeout=4)  # head, body and keep-alive timeouts are all 0.5 s


def statuses(data: bytes) -> list[int]:
    """Status codes of the responses in `data` (bodies are JSON or absent here, so a scan is enough)."""
    found = []
    for line in data.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0] in (b"HTTP/1.1", b"HTTP/1.0") and parts[1].isdigit():
            found.append(int(parts[1]))
    return found


async def test_damaged_requests_never_get_a_5xx_a_hang_or_an_error_log(setup):
    router, caplog = setup
    port = router.settings.port
    seen: dict[int, int] = {}
    answers = await asyncio.gather(*(send(port, raw) for raw in CORPUS))  # all at once: a burst of them
    for raw, data in zip(CORPUS, answers, strict=True):
        codes = statuses(data)
        assert all(code < 500 for code in codes), (raw, data[:300])
        for code in codes:
            seen[code] = seen.get(code, 0) + 1
        head, _, body = data.partition(b"\r\n\r\n")
        if codes and codes[0] >= 400 and b"application/json" in head:
            end = body.find(b"HTTP/1.")
            assert "error" in orjson.loads(body if end < 0 else body[:end]), data[:300]
    print("statuses over", len(CORPUS), "damaged requests:", dict(sorted(seen.items())))
    assert len(seen) >= 3  # the corpus reaches several outcomes, not one kind of refusal
    stats = await settled(router)
    assert stats["streams"] == 0 and stats["active_requests"] == 0
    async with aiohttp.ClientSession(timeout=BOUNDED) as session:
        async with session.post(router.url + "/v1/completions", data=GOOD) as resp:
            assert resp.status == 200
    errors = [r for r in caplog.records if r.name.startswith("kthena_router") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]

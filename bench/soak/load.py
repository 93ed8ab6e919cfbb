"""The soak's client: open-loop requests, each sorted into one outcome, expected or unexpected.

Outcomes are short strings: `ok`; `route_absent` (a 404 `route_not_found` on a churning route that was
removed at that moment); `<status>:<code>` for an error answer; `stream:<code>` for a stream that ended with an
error event; `stream_cut` (a 200 stream that ends with neither `[DONE]` nor an error event); `malformed` (a 200
whose body is not the completion asked for); `hang` (no complete answer within the hang limit);
`client:<exception>` (the connection failed under the client).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.soak.fleet import CHURN_ROUTES, MODEL

# What a restarting model server may cause: the request was on its connection, or nothing was left to pick.
EXPECTED_CODES = frozenset({"upstream_error", "no_endpoints", "upstream_timeout"})
EXPECTED_STATUSES = frozenset({"502", "503", "504"})


def expected(outcome: str) -> bool:
    if outcome in ("ok", "route_absent"):
        return True
    kind, _, code = outcome.partition(":")
    return code in EXPECTED_CODES and (kind == "stream" or kind in EXPECTED_STATUSES)


@dataclass(slots=True)
class Tally:
    """Outcomes so far, the latency of every `ok` answer, and a few examples of each unexpected outcome."""

    outcomes: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, latency: float, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        if outcome == "ok":
            self.latencies.append(latency)
        elif not expected(outcome):
            shown = self.examples.setdefault(outcome, [])
            if len(shown) < 5:
                shown.append(detail[:300])


def _error_code(data: bytes) -> str:
    try:
        return str(orjson.loads(data)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unparsable"


def _check_stream(data: bytes, tokens: int) -> str:
    events = data.strip().split(b"\n\n")
    if events[-1] == b"data: [DONE]":
        chunks = [e for e in events[:-1] if e.startswith(b"data: {")]
        return "ok" if len(chunks) == tokens else "malformed"
    code = _error_code(events[-1].removeprefix(b"data: "))
    return "stream_cut" if code == "unparsable" else f"stream:{code}"


def _check_json(data: bytes, tokens: int) -> str:
    try:
        body = orjson.loads(data)
        ok = body["usage"]["completion_tokens"] == tokens and isinstance(body["choices"][0]["text"], str)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        ok = False
    return "ok" if ok else "malformed"


async def one_request(session: aiohttp.ClientSession, url: str, tally: Tally, *, stream: bool, churn: bool,
                      hang_after: float, rng: random.Random) -> None:
    tokens = rng.randint(4, 32)
    body = {"model": MODEL, "prompt": "soak " * rng.randint(1, 60), "max_tokens": tokens, "stream": stream}
    path = f"/churn-{rng.randrange(CHURN_ROUTES)}/v1/completions" if churn else "/v1/completions"
    started = asyncio.get_running_loop().time()
    detail = ""
    try:
        async with asyncio.timeout(hang_after):
            async with session.post(url + path, data=orjson.dumps(body),
                                    headers={"Content-Type": "application/json"}) as resp:
                data = await resp.read()
        status = resp.status
        detail = f"{status} {path} {data[-200:]!r}"
        if status == 200:
            outcome = _check_stream(data, tokens) if stream else _check_json(data, tokens)
        else:
            code = _error_code(data)
            outcome = "route_absent" if churn and status == 404 and code == "route_not_found" else f"{status}:{code}"
    except TimeoutError:
        outcome, detail = "hang", f"{path} stream={stream}"
    except aiohttp.ClientError as exc:
        outcome, detail = f"client:{type(exc).__name__}", f"{path} stream={stream}: {exc}"
    tally.add(outcome, asyncio.get_running_loop().time() - started, detail)


async def open_loop(url: str, tally: Tally, *, rate: float, until: float, hang_after: float, seed: int) -> int:
    """Send Poisson arrivals at `rate` per second until `until` (loop time); half stream, a tenth go to a
    churning route, a tenth on a fresh connection each. Returns how many were sent, once all are answered."""
    rng = random.Random(seed)
    pending: set[asyncio.Task] = set()
    sent = 0
    kept = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    loop = asyncio.get_running_loop()
    try:
        next_at = loop.time()
        while next_at < until:
            session = fresh if rng.random() < 0.1 else kept
            task = asyncio.create_task(one_request(session, url, tally, stream=rng.random() < 0.5,
                                                   churn=rng.random() < 0.1, hang_after=hang_after, rng=rng),
                                       name=f"request-{sent}")
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            next_at += rng.expovariate(rate)
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
        await kept.close()
        await fresh.close()
    return sent

"""A fast fake OpenAI server for the overhead benchmark: canned completions, streamed or not.

Raw asyncio protocol on uvloop with the llhttp parser, so that on one core it answers several times faster
than any proxy in front of it. `stream: true` gets N SSE events then `data: [DONE]`, N being the request's
`max_tokens` (or `max_completion_tokens`, which sglang-router sends instead), each written on its own;
`--ttft-ms` and `--itl-ms` add a delay before the first event and between events. Also answers `/health`, `/v1/models`, `/metrics`
(vLLM names, idle) and `/load`, which the routers under test poll.
"""

from __future__ import annotations

import argparse
import asyncio
import re

import httptools
import uvloop

_MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens"\s*:\s*(\d+)')
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_ITL = re.compile(rb'"bench_itl_ms"\s*:\s*(\d+)')  # a per-request pace, for held-open streams


def _json(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body)) + body


def completion(tokens: int) -> bytes:
    text = b" ".join(b"tok" for _ in range(tokens))
    return _json(b'{"id":"cmpl-bench","object":"text_completion","created":0,"model":"bench",'
                 b'"choices":[{"index":0,"text":"' + text + b'","finish_reason":"length"}],'
                 b'"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}' % (tokens, tokens + 8))


_EVENT = b'data: {"id":"cmpl-bench","object":"text_completion","created":0,"model":"bench","choices":[{"index":0,"text":"tok","finish_reason":null}]}\n\n'
_EVENT_CHUNK = b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT)
_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"


def _usage_chunk(tokens: int) -> bytes:
    event = (b'data: {"id":"cmpl-bench","object":"text_completion","created":0,"model":"bench","choices":[],'
             b'"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}\n\n' % (tokens, tokens + 8))
    return b"%x\r\n%s\r\n" % (len(event), event)


_DONE = b"data: [DONE]\n\n"
_END = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_DONE), _DONE)
_METRICS = (b"vllm:num_requests_running{model_name=\"bench\"} 0\nvllm:num_requests_waiting{model_name=\"bench\"} 0\n"
            b"vllm:kv_cache_usage_perc{model_name=\"bench\"} 0\nvllm:gpu_cache_usage_perc{model_name=\"bench\"} 0\n")
_CANNED = {
    b"/health": _json(b"{}"),
    b"/v1/models": _json(b'{"object":"list","data":[{"id":"bench","object":"model"}]}'),
    b"/metrics": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(_METRICS) + _METRICS,
    b"/load": _json(b'{"load":0}'),
}
_COMPLETIONS: dict[int, bytes] = {}


class Upstream(asyncio.Protocol):
    def __init__(self, ttft: float, itl: float) -> None:
        self.ttft = ttft
        self.itl = itl
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.queue: list[tuple[bytes, bytes]] = []
        self.busy = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        canned = _CANNED.get(path)
        if canned is not None:
            self._send(canned)
            return
        match = _MAX_TOKENS.search(body)
        tokens = int(match.group(1)) if match else 16
        if _STREAM.search(body):
            pace = _ITL.search(body)
            itl = int(pace.group(1)) / 1000 if pace else self.itl
            asyncio.get_running_loop().create_task(self._stream(tokens, itl))
            return
        response = _COMPLETIONS.get(tokens)
        if response is None:
            response = _COMPLETIONS[tokens] = completion(tokens)
        self._send(response)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _stream(self, tokens: int, itl: float) -> None:
        transport = self.transport
        transport.write(_SSE_HEAD)
        if self.ttft:
            await asyncio.sleep(self.ttft)
        for i in range(tokens):
            if transport.is_closing():
                return
            transport.write(_EVENT_CHUNK)  # one write per event, as a model server flushes each token
            if i < tokens - 1:
                await asyncio.sleep(itl)
        transport.write(_usage_chunk(tokens) + _END)


async def serve(host: str, port: int, ttft_ms: float, itl_ms: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(ttft_ms / 1000, itl_ms / 1000), host, port,
                                      reuse_address=True, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--itl-ms", type=float, default=0.0)
    args = p.parse_args()
    uvloop.run(serve(args.host, args.port, args.ttft_ms, args.itl_ms))


if __name__ == "__main__":
    main()

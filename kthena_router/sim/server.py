"""The simulator's HTTP surface: vLLM's OpenAI-compatible endpoints on aiohttp, and a runner for them.

`build_app` wires the routes to one `Engine` and one `SimMetrics` owned by the app; `start_simulator`
binds a real socket (any loopback address, port 0 for a free one) and serves the app until
`SimServer.close`; the engine's task is stopped with the app. Request bodies become `GenerationRequest`s in `protocol.py`; errors are rendered in
one middleware; every response, errors and /metrics included, carries `X-Served-By: host:port`.

Handlers must be cancelled when their client disconnects so that queue places and slots are given back
at once: `start_simulator` runs the app with `handler_cancellation=True`, and anyone serving
`build_app` another way must do the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from kthena_router.sim.config import SimConfig
from kthena_router.sim.engine import Engine, Sequence
from kthena_router.sim.errors import SimError, error_body
from kthena_router.sim.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kthena_router.sim.metrics import SimMetrics
from kthena_router.sim.protocol import (
    SSE_DONE,
    GenerationRequest,
    Kind,
    StreamEncoder,
    models_body,
    parse_request,
    response_body,
    response_id,
)

log = logging.getLogger(__name__)

SERVED_BY_HEADER = "X-Served-By"

# How long `SimServer.close` lets in-flight requests run before cancelling them.
SHUTDOWN_GRACE_S = 1.0

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class SimState:
    """Everything the handlers of one simulator share."""

    config: SimConfig
    served_by: str
    engine: Engine
    metrics: SimMetrics
    served: frozenset[str]
    models_body: bytes
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


STATE = web.AppKey("kthena_sim_state", SimState)


def build_app(config: SimConfig, served_by: str) -> web.Application:
    """An aiohttp app that behaves like one vLLM server for `config`; `served_by` is its `host:port`."""
    metrics = SimMetrics(config)
    state = SimState(
        config=config,
        served_by=served_by,
        engine=Engine(config, metrics),
        metrics=metrics,
        served=config.served_models,
        models_body=models_body(config, int(time.time())),
    )
    app = web.Application(middlewares=[_render_errors])
    app[STATE] = state
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/get_load", _load)

    async def close_engine(app: web.Application) -> None:
        await app[STATE].engine.close()

    app.on_cleanup.append(close_engine)

    async def add_served_by(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[SERVED_BY_HEADER] = served_by

    app.on_response_prepare.append(add_served_by)
    return app


# -- error boundary ------------------------------------------------------------------------------------


@web.middleware
async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SimError as exc:
        return _error_response(exc.status, exc.body())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            body = error_body(404, f"The path `{request.path}` does not exist.", "NotFoundError")
        elif exc.status == 405:
            body = error_body(
                405, f"Method {request.method} is not allowed on `{request.path}`.", "MethodNotAllowedError"
            )
            resp = _error_response(405, body)
            if allow := exc.headers.get("Allow"):
                resp.headers["Allow"] = allow
            return resp
        else:
            body = error_body(
                exc.status, exc.reason, "BadRequestError" if exc.status < 500 else "InternalServerError"
            )
        return _error_response(exc.status, body)
    except Exception:
        log.exception("simulator failed on %s %s", request.method, request.path)
        return _error_response(500, error_body(500, "Internal simulator error.", "InternalServerError"))


def _error_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON)


# -- handlers ------------------------------------------------------------------------------------------


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completion")


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def _generate(request: web.Request, kind: Kind) -> web.StreamResponse:
    state = request.app[STATE]
    req = parse_request(kind, await request.read(), state.config, state.served)
    rid = response_id(kind, next(state.ids))
    created = int(time.time())
    seq = Sequence(
        prompt_tokens=req.prompt_tokens,
        max_tokens=req.max_tokens,
        lora=req.lora,
        finish_reason=req.finish_reason,
        token_ids=req.token_ids,
    )
    if req.stream:
        return await _stream(request, state, req, seq, StreamEncoder(req, rid, created))
    async with aclosing(state.engine.generate(seq)) as tokens:
        async for _ in tokens:
            pass
    return web.Response(body=response_body(req, rid, created, seq.generated), content_type=_JSON)


async def _stream(
    request: web.Request, state: SimState, req: GenerationRequest, seq: Sequence, encoder: StreamEncoder
) -> web.StreamResponse:
    # Headers go out at once, as vLLM's do; each event is written as soon as its token exists.
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    await resp.prepare(request)
    try:
        async with aclosing(state.engine.generate(seq)) as tokens:
            async for index in tokens:
                if index == 0 and (opening := encoder.role_event()) is not None:
                    await resp.write(opening)
                await resp.write(encoder.token_event(index))
        if (closing := encoder.usage_event(seq.generated)) is not None:
            await resp.write(closing)
        await resp.write(SSE_DONE)
        await resp.write_eof()
    except ConnectionResetError:
        log.debug(
            "client of a %s stream left after %d of %d tokens", req.model, seq.generated, req.max_tokens
        )
    except Exception:
        # Headers are out, so no error response can follow: log, and cut the stream short.
        log.exception("stream of %s failed after %d tokens", req.model, seq.generated)
        if request.transport is not None:
            request.transport.close()
    return resp


async def _models(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[STATE].models_body, content_type=_JSON)


async def _health(request: web.Request) -> web.StreamResponse:
    return web.Response()


async def _metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return web.Response(
        body=state.metrics.render(state.engine), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


async def _load(request: web.Request) -> web.StreamResponse:
    # SGLang's load report, which vllm-router's `power_of_two` policy polls: requests in the engine.
    engine = request.app[STATE].engine
    body = orjson.dumps(
        {
            "load": engine.num_running + engine.num_waiting,
            "num_reqs": engine.num_running,
            "num_waiting_reqs": engine.num_waiting,
        }
    )
    return web.Response(body=body, content_type=_JSON)


# -- running on a socket -------------------------------------------------------------------------------


class SimServer:
    """A simulator serving on a real socket until `close`."""

    __slots__ = ("config", "host", "port", "_runner", "_closed")

    def __init__(self, config: SimConfig, host: str, port: int, runner: web.AppRunner) -> None:
        self.config = config
        self.host = host
        self.port = port
        self._runner = runner
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{host_port(self.host, self.port)}"

    async def close(self) -> None:
        """Stop accepting, let in-flight requests run for `SHUTDOWN_GRACE_S`, cancel the rest."""
        if self._closed:
            return
        self._closed = True
        await self._runner.cleanup()

    def __repr__(self) -> str:
        return f"<SimServer {self.config.model} at {self.url}>"


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_simulator(config: SimConfig, host: str, port: int) -> SimServer:
    """Serve a simulator on `host:port` (port 0 picks a free port; `SimServer.port` tells which)."""
    sock = await _bind(host, port)
    runner: web.AppRunner | None = None
    server: SimServer | None = None
    try:
        bound_port = sock.getsockname()[1]
        app = build_app(config, host_port(host, bound_port))
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        server = SimServer(config, host, bound_port, runner)
    finally:
        if server is None:
            if runner is not None:
                await runner.cleanup()
            sock.close()
    log.info(
        "simulating %s (LoRA adapters: %s) at %s", config.model, ",".join(config.loras) or "none", server.url
    )
    return server


async def _bind(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, sock_type, proto, _, address = infos[0]
    sock = socket.socket(family, sock_type, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock

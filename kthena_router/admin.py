"""The side servers: Prometheus `/metrics` on `--metrics-port`, and the debug dump on 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from kthena_router.listeners import make_server
from kthena_router.metrics import RouterMetrics

_JSON = "application/json"


async def start_metrics_server(metrics: RouterMetrics, host: str, port: int) -> web.ServerRunner:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, body=b'{"message":"not found"}', content_type=_JSON)
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    runner = web.ServerRunner(make_server(handle, max_body_bytes=1024))
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def start_debug_server(dump: Callable[[], dict[str, Any]], port: int) -> web.ServerRunner:
    """`/debug/config_dump` (everything) and `/debug/config_dump/<section>` for each top-level key."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path != "/debug/config_dump" and not path.startswith("/debug/config_dump/"):
            return web.Response(status=404, body=b'{"message":"not found"}', content_type=_JSON)
        data = dump()
        section = path[len("/debug/config_dump/"):] if path != "/debug/config_dump" else ""
        if section:
            if section not in data:
                return web.Response(status=404, body=orjson.dumps(
                    {"message": f"unknown section {section!r}", "sections": sorted(data)}), content_type=_JSON)
            data = data[section]
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
        return web.Response(body=body, content_type=_JSON)

    runner = web.ServerRunner(make_server(handle, max_body_bytes=1024))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner

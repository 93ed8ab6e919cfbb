"""Real servers on loopback for integration tests: the router in-process, simulators, a few odd upstreams."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from kthena_router.app import RouterApp
from kthena_router.settings import Settings

# Listener ports are taken below the kernel's ephemeral range (32768-60999 on Linux), where outgoing
# connections get their source ports: a port picked there can be taken by some connect() before the test
# binds it, which made rare "address already in use" failures under heavy connection churn.
_PORTS = range(20000, 32768)
_pick = random.Random(os.getpid() ^ time.time_ns())


def free_port(*hosts: str) -> int:
    """A port that is free on every given loopback address, outside the ephemeral range."""
    hosts = hosts or ("127.0.0.1",)
    for _ in range(1000):
        port = _pick.choice(_PORTS)
        ok = True
        for host in hosts:
            with socket.socket() as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free port")


def pod(name: str, ip: str, labels: dict[str, str], *, namespace: str = "default", ready: bool = True) -> str:
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}, labels: {{{label_text}}}}}
        status:
          podIP: {ip}
          conditions: [{{type: Ready, status: "{'True' if ready else 'False'}"}}]
        """)


def pool(name: str, port: int, labels: dict[str, str], *, namespace: str = "default") -> str:
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return textwrap.dedent(f"""\
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          selector: {{matchLabels: {{{label_text}}}}}
          targetPorts: [{{number: {port}}}]
        """)


def gateway(name: str, port: int, *, namespace: str = "default", hostname: str | None = None) -> str:
    host = f"\n    hostname: \"{hostname}\"" if hostname else ""
    return textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          gatewayClassName: kthena-router
          listeners:
          - name: http
            port: {port}
            protocol: HTTP{host}
        """)


def route_to_pool(pool_name: str, *, name: str = "r", namespace: str = "default") -> str:
    """An HTTPRoute on the implied `default` Gateway sending everything to one InferencePool."""
    return textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          parentRefs: [{{name: default}}]
          rules:
          - backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: {pool_name}}}]
        """)


# A model server's answer to a non-streamed completion, for raw stand-ins that write bytes themselves.
COMPLETION = (b'{"id":"c","object":"text_completion","model":"m","choices":[{"index":0,"text":"ok",'
              b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
COMPLETION_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(COMPLETION), COMPLETION)


def content_length(head: bytes) -> int:
    """The Content-Length of a raw request head (0 without one)."""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next request on a raw stand-in's connection: its head (through the blank line) and its
    Content-Length body. Raises asyncio.IncompleteReadError when the peer closes first."""
    head = await reader.readuntil(b"\r\n\r\n")
    return head, await reader.readexactly(content_length(head))


def write_manifests(directory: Path, name: str, *docs: str) -> Path:
    path = directory / name
    path.write_text("---\n".join(docs))
    return path


@dataclass
class RunningRouter:
    app: RouterApp
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    @property
    def debug_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.debug_port}/debug/config_dump"

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        """Wait until `predicate(app)` holds, e.g. after a manifest change."""
        async with asyncio.timeout(timeout):
            while not predicate(self.app):
                await asyncio.sleep(0.02)


async def start_router(config_dir: Path, **overrides) -> RunningRouter:
    settings = Settings(
        port=overrides.pop("port", None) or free_port(),
        host="127.0.0.1",
        metrics_port=free_port(),
        debug_port=free_port(),
        config_dir=str(config_dir),
        reload_interval=0.05,
        access_log=False,
        drain_timeout=5.0,
    )
    settings = replace(settings, **overrides)
    app = RouterApp(settings)
    await app.start()
    return RunningRouter(app, settings)


async def start_app(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner

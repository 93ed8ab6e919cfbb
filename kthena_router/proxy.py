"""The request path: listener and route lookup, endpoint choice, and the streaming relay to the endpoint.

`Proxy.handle` is the error boundary. Everything below it raises `RouterError`s; the boundary renders them
as OpenAI-style error objects, and after the response headers have gone out it ends the stream instead
(an SSE error event, or a closed connection for other bodies). Per request it reads the Snapshot once,
parses the body once and forwards the original bytes; no locks, no sorting, no regex compiling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kthena_router import errors
from kthena_router.accesslog import AccessLog
from kthena_router.api.hostnames import normalize_host
from kthena_router.metrics import RouterMetrics
from kthena_router.openai import (
    MODEL_PATHS,
    USAGE_PATHS,
    ParsedBody,
    inject_stream_usage,
    parse_body,
    wants_usage,
)
from kthena_router.record import RequestRecord
from kthena_router.routing.filters import apply_header_modifier, redirect_location, rewrite_path
from kthena_router.scheduling.admission import Admission, priority_of
from kthena_router.scheduling.picker import Picker, PickRequest
from kthena_router.settings import Settings
from kthena_router.snapshot import Backend, Endpoint, EndpointKey, ListenerRoutes, Pool, RouteMatchResult
from kthena_router.state import RouterState
from kthena_router.usage import JSONUsage, SSEUsage

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and proxy credentials: never forwarded in either direction.
HOP_BY_HOP = ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
              "TE", "Trailer", "Transfer-Encoding", "Upgrade")
_DROP_REQUEST = (*HOP_BY_HOP, "Content-Length", "Content-Encoding", "Expect")
_DROP_RESPONSE = (*HOP_BY_HOP, "Content-Length")
_RETRYABLE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_JSON = "application/json"
_HEALTH_OK = b'{"message":"ok"}'
_READY = b'{"message":"router is ready"}'
_NOT_READY = b'{"message":"router is not ready"}'
CLIENT_CLOSED = 499  # nginx's convention for "the client went away first"
# The inference extension's conformance tests pick endpoints with a request header and check which one
# served; honoured only with --conformance-test-mode.
CONFORMANCE_SELECTION_HEADER = "test-epp-endpoint-selection"
CONFORMANCE_SERVED_HEADER = "x-conformance-test-served-endpoint"
# Names the InferenceObjective (and so the priority) of a request; consumed here, never forwarded.
OBJECTIVE_HEADER = "x-gateway-inference-objective"


class _Exchange:
    """Mutable per-request context shared by the steps of one request."""

    __slots__ = ("request", "rec", "response", "upstream_body", "injected_usage", "model_label", "pick")

    def __init__(self, request: web.BaseRequest, rec: RequestRecord) -> None:
        self.request = request
        self.rec = rec
        self.response: web.StreamResponse | None = None  # set once headers are sent to the client
        self.upstream_body = b""
        self.injected_usage = False
        self.model_label: str | None = None  # set while counted in the active-downstream gauge
        self.pick: PickRequest | None = None  # what the picker saw, for its feedback once an endpoint answers


class Proxy:
    def __init__(self, *, state: RouterState, settings: Settings, metrics: RouterMetrics,
                 access_log: AccessLog, picker: Picker, session: aiohttp.ClientSession,
                 rng: random.Random | None = None, admission: Admission | None = None) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.access_log = access_log
        self.picker = picker
        self.admission = admission
        self.session = session
        self.rng = rng or random.Random()
        self._connect_timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout)

    # --- the boundary -------------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest, port: int) -> web.StreamResponse:
        if port == self.settings.port:
            path = request.path
            if path == "/healthz":
                return web.Response(body=_HEALTH_OK, content_type=_JSON)
            if path == "/readyz":
                if self.state.ready:
                    return web.Response(body=_READY, content_type=_JSON)
                return web.Response(status=503, body=_NOT_READY, content_type=_JSON)
            if path == "/metrics" and self.settings.expose_metrics_on_router_port:
                body, content_type = self.metrics.render(request.headers.get("Accept"))
                return web.Response(body=body, headers={"Content-Type": content_type})
        version = request.version
        rec = RequestRecord(request.method, request.path, f"HTTP/{version.major}.{version.minor}")
        ex = _Exchange(request, rec)
        state = self.state
        state.request_started()
        try:
            return await self._serve(ex, port)
        except errors.RouterError as err:
            return self._fail(ex, err)
        except asyncio.CancelledError:
            if ex.response is None:
                rec.status_code = CLIENT_CLOSED
            rec.error_type = rec.error_type or "client_disconnected"
            raise
        except ConnectionResetError:  # writing to a client that has gone away
            rec.error_type = rec.error_type or "client_disconnected"
            if ex.response is None:
                rec.status_code = CLIENT_CLOSED
                return web.Response(status=CLIENT_CLOSED)
            return ex.response
        except Exception as exc:  # the last line of defence: a bug must not leak a traceback to clients
            log.exception("unexpected error serving %s %s", request.method, request.path)
            if ex.response is not None:
                rec.error_type = rec.error_type or "internal_error"
                if request.transport is not None:
                    request.transport.close()
                return ex.response
            return self._fail(ex, errors.RouterError(f"internal error: {type(exc).__name__}"))
        finally:
            state.request_finished()
            rec.t_end = time.perf_counter()
            if ex.model_label is not None:
                self.metrics.downstream_finished(ex.model_label)
            self.metrics.request_done(rec)
            self.access_log.log(rec)

    def _fail(self, ex: _Exchange, err: errors.RouterError) -> web.StreamResponse:
        rec = ex.rec
        rec.status_code = err.status
        rec.error_type = err.reason
        rec.error_message = err.message
        headers = {"Content-Type": _JSON}
        if rec.request_id:
            headers["X-Request-Id"] = rec.request_id
        return web.Response(status=err.status, body=err.body(), headers=headers)

    # --- routing ------------------------------------------------------------------------------------

    async def _serve(self, ex: _Exchange, port: int) -> web.StreamResponse:
        request, rec = ex.request, ex.rec
        snap = self.state.snapshot
        table = snap.ports.get(port)
        host = normalize_host(request.host or "")
        listener = table.select(host) if table is not None else None
        if listener is None:
            raise errors.NoListener(f"no listener on port {port} matches host {host!r}")
        rec.gateway = str(listener.gateway)
        request_id = request.headers.get("X-Request-Id") or os.urandom(16).hex()
        rec.request_id = request_id

        body = await self._read_body(request)
        parsed = parse_body(body, request.content_type,
                            required=request.method == "POST" and request.path in MODEL_PATHS)
        rec.model = parsed.model or ""
        rec.stream = parsed.stream
        if parsed.model is not None:
            ex.model_label = self.metrics.model_label(parsed.model)
            self.metrics.downstream_started(ex.model_label)

        match = listener.table.match(host, request.method, request.path, request.query, request.headers,
                                     parsed.model)
        if match is None:
            raise errors.NoRoute(_no_route_message(request.method, request.path, parsed.model))
        rule = match.rule
        rec.http_route = str(rule.route)
        if rule.error is not None:
            raise errors.InvalidBackend(rule.error)
        if rule.redirect is not None:
            return self._redirect(ex, listener, match, host)
        backend = rule.choose_backend(self.rng)
        if backend is None:
            raise errors.InvalidBackend(f"HTTPRoute {rule.route} rule {rule.rule_index} has no backend")
        if backend.error is not None:
            raise errors.InvalidBackend(backend.error)
        pool = snap.pools.get(backend.pool) if backend.pool is not None else None
        if pool is None:
            raise errors.InvalidBackend(f"InferencePool {backend.pool} is not known")
        rec.inference_pool = str(pool.ref)
        if pool.unusable_reason is not None:
            raise errors.InvalidBackend(pool.unusable_reason)
        if not pool.endpoints:
            raise errors.NoEndpoints(f"InferencePool {pool.ref} has no ready endpoints")
        priority = priority_of(snap.objectives, pool, request.headers.get(OBJECTIVE_HEADER)) \
            if snap.objectives else 0

        ex.upstream_body = body
        if parsed.stream and self.settings.stream_usage and parsed.payload is not None \
                and request.path in USAGE_PATHS and not wants_usage(parsed.payload):
            injected = inject_stream_usage(body, parsed.payload)
            if injected is not None:
                ex.upstream_body = injected
                ex.injected_usage = True
        headers = self._upstream_headers(request, parsed, request_id, listener, match, backend)
        path = request.rel_url.raw_path
        if rule.url_rewrite is not None and rule.url_rewrite.path is not None:
            path = URL.build(path=rewrite_path(request.path, match.path, rule.url_rewrite.path)).raw_path
        query = request.rel_url.raw_query_string

        timeouts = rule.timeouts
        try:
            async with asyncio.timeout(timeouts.request or None):
                return await self._forward(ex, pool, parsed, headers, path, query, backend, rule,
                                           timeouts.backend_request or None, priority)
        except TimeoutError:
            if ex.response is None:
                raise errors.RequestTimeout(
                    f"request timed out after {timeouts.request:g}s (HTTPRoute {rule.route} timeouts.request)"
                ) from None
            await self._abort(ex, errors.RequestTimeout("request timed out while streaming"))
            return ex.response

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise errors.BodyTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        if not request.body_exists:
            return b""
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            # Clients such as curl hold large bodies back until they see this (curl waits a second).
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        if length is not None:
            try:
                return await request.content.readexactly(length)
            except asyncio.IncompleteReadError:
                raise errors.BadRequest("request body ended before Content-Length bytes") from None
        chunks, size = [], 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise errors.BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _upstream_headers(self, request: web.BaseRequest, parsed: ParsedBody, request_id: str,
                          listener: ListenerRoutes, match: RouteMatchResult, backend: Backend) -> CIMultiDict:
        headers = CIMultiDict(request.headers)
        connection = headers.get("Connection")
        if connection:
            for token in connection.split(","):
                headers.popall(token.strip(), None)
        for name in _DROP_REQUEST:
            headers.popall(name, None)
        headers.popall(OBJECTIVE_HEADER, None)
        headers["X-Request-Id"] = request_id
        if parsed.model is not None:
            headers["X-Gateway-Model-Name"] = parsed.model
        remote = request.remote
        if remote:
            prior = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
        if "X-Forwarded-Proto" not in headers:
            headers["X-Forwarded-Proto"] = request.scheme
        rule = match.rule
        if rule.request_headers is not None:
            apply_header_modifier(headers, rule.request_headers)
        if backend.request_headers is not None:
            apply_header_modifier(headers, backend.request_headers)
        if rule.url_rewrite is not None and rule.url_rewrite.hostname:
            headers["Host"] = rule.url_rewrite.hostname
        return headers

    def _redirect(self, ex: _Exchange, listener: ListenerRoutes, match: RouteMatchResult,
                  host: str) -> web.StreamResponse:
        request = ex.request
        redirect = match.rule.redirect
        assert redirect is not None
        location = redirect_location(request.scheme, host, listener.port, request.path,
                                     request.rel_url.raw_query_string, match.path, redirect)
        ex.rec.status_code = redirect.status_code
        return web.Response(status=redirect.status_code, headers={"Location": location})

    # --- upstream -----------------------------------------------------------------------------------

    async def _forward(self, ex: _Exchange, pool, parsed: ParsedBody, headers: CIMultiDict, path: str,
                       query: str, backend: Backend, rule, backend_timeout: float | None,
                       priority: int = 0) -> web.StreamResponse:
        rec = ex.rec
        if self.settings.conformance_test_mode:
            pool = _restrict_for_conformance(pool, ex.request.headers.get(CONFORMANCE_SELECTION_HEADER))
        if self.admission is not None:
            await self.admission.admit(pool, priority)  # may wait while the pool is saturated
        pick_request = ex.pick = PickRequest(parsed.model, parsed.payload, ex.request.headers)
        tried: list[EndpointKey] = []
        attempts = min(1 + self.settings.max_retries, len(pool.endpoints))
        last_error: Exception | None = None
        rec.t_routed = time.perf_counter()
        for _ in range(attempts):
            endpoint = self.picker.pick(pool, pick_request, tried)
            if endpoint is None:
                break
            tried.append(endpoint.key)
            rec.upstream_attempts += 1
            rec.selected_endpoint = endpoint.address
            rec.selected_pod = str(endpoint.pod)
            try:
                response = await self._attempt(ex, endpoint, headers, path, query, backend, rule,
                                               backend_timeout, parsed.model)
                self.picker.finished(pick_request, endpoint, rec)
                return response
            except _RETRYABLE as exc:
                if ex.response is not None:
                    raise
                last_error = exc
                log.warning("connection to %s failed (%s); %s", endpoint.address, exc,
                            "trying another endpoint" if len(tried) < attempts else "giving up")
        raise errors.UpstreamFailed(
            f"could not reach any endpoint of InferencePool {pool.ref}"
            + (f": {last_error}" if last_error else ""))

    async def _attempt(self, ex: _Exchange, endpoint: Endpoint, headers: CIMultiDict, path: str, query: str,
                       backend: Backend, rule, backend_timeout: float | None,
                       model: str | None) -> web.StreamResponse:
        rec = ex.rec
        url = URL.build(scheme="http", authority=endpoint.address, path=path, query_string=query, encoded=True)
        inflight = self.state.inflight
        model_label = self.metrics.model_label(model or "")
        pool_label = rec.inference_pool
        inflight.acquire(endpoint.key)
        self.metrics.upstream_started(endpoint.address, pool_label, model_label)
        try:
            if not rec.t_upstream_start:
                rec.t_upstream_start = time.perf_counter()
            try:
                async with asyncio.timeout(backend_timeout):
                    return await self._exchange(ex, endpoint, url, headers, backend, rule)
            except TimeoutError:
                if ex.response is None:
                    raise errors.UpstreamTimeout(
                        f"endpoint {endpoint.address} did not respond within {backend_timeout:g}s "
                        f"(HTTPRoute {rule.route} timeouts.backendRequest)") from None
                await self._abort(ex, errors.UpstreamTimeout("backend request timed out while streaming"))
                return ex.response
        finally:
            inflight.release(endpoint.key)
            self.metrics.upstream_finished(endpoint.address, pool_label, model_label)

    async def _exchange(self, ex: _Exchange, endpoint: Endpoint, url: URL, headers: CIMultiDict,
                        backend: Backend, rule) -> web.StreamResponse:
        request, rec = ex.request, ex.rec
        async with self.session.request(request.method, url, data=ex.upstream_body or None, headers=headers,
                                        allow_redirects=False, timeout=self._connect_timeout,
                                        auto_decompress=False) as upstream:
            rec.t_first_byte = time.perf_counter()
            rec.upstream_status_code = upstream.status
            rec.status_code = upstream.status
            if upstream.status < 500 and ex.pick is not None:
                self.picker.served(ex.pick, endpoint)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                           headers=upstream.headers)
            out = response.headers
            connection = upstream.headers.get("Connection")
            if connection:
                for token in connection.split(","):
                    out.popall(token.strip(), None)
            for name in _DROP_RESPONSE:
                out.popall(name, None)
            if "X-Request-Id" not in out:
                out["X-Request-Id"] = rec.request_id
            if self.settings.conformance_test_mode:
                out[CONFORMANCE_SERVED_HEADER] = rec.selected_endpoint
            if rule.response_headers is not None:
                apply_header_modifier(out, rule.response_headers)
            if backend.response_headers is not None:
                apply_header_modifier(out, backend.response_headers)
            content_type = upstream.headers.get("Content-Type", "")
            sse = content_type.startswith("text/event-stream")
            if not sse and upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            ex.response = response
            try:
                if sse:
                    await self._relay_sse(ex, upstream, response)
                else:
                    await self._relay_plain(ex, upstream, response, request.path in USAGE_PATHS)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                await self._abort(ex, errors.UpstreamFailed(f"endpoint failed mid-response: {exc}"))
                return response
            rec.t_upstream_end = time.perf_counter()
            await response.write_eof()
            return response

    async def _relay_sse(self, ex: _Exchange, upstream: aiohttp.ClientResponse,
                         response: web.StreamResponse) -> None:
        rec = ex.rec
        scanner = SSEUsage(suppress=ex.injected_usage)
        write = response.write
        async for chunk in upstream.content.iter_any():
            data = scanner.feed(chunk)
            if data:
                if not rec.t_first_token:
                    rec.t_first_token = time.perf_counter()
                await write(data)
        rest = scanner.flush()
        if rest:
            await write(rest)
        rec.input_tokens = scanner.prompt_tokens
        rec.output_tokens = scanner.completion_tokens

    async def _relay_plain(self, ex: _Exchange, upstream: aiohttp.ClientResponse,
                           response: web.StreamResponse, read_usage: bool) -> None:
        usage = JSONUsage() if read_usage else None
        write = response.write
        async for chunk in upstream.content.iter_any():
            if usage is not None:
                usage.feed(chunk)
            await write(chunk)
        if usage is not None:
            ex.rec.input_tokens, ex.rec.output_tokens = usage.tokens()

    async def _abort(self, ex: _Exchange, err: errors.RouterError) -> None:
        """End a response whose headers are already sent: an SSE error event, else a cut connection."""
        rec = ex.rec
        rec.error_type = err.reason
        rec.error_message = err.message
        response = ex.response
        assert response is not None
        if response.content_type == "text/event-stream" or \
                response.headers.get("Content-Type", "").startswith("text/event-stream"):
            try:
                await response.write(b"data: " + err.body() + b"\n\n")
                await response.write_eof()
                return
            except (ConnectionError, RuntimeError):
                pass
        transport = ex.request.transport
        if transport is not None:
            transport.close()


def _no_route_message(method: str, path: str, model: str | None) -> str:
    if model is not None:
        return f"no route matches {method} {path} for model {model!r}"
    return f"no route matches {method} {path}"



def _restrict_for_conformance(pool: Pool, selection: str | None) -> Pool:
    """The pool limited to the endpoints named in the conformance header (IPs or ip:port, comma-separated)."""
    if selection is None:
        return pool
    wanted = {item.strip() for item in selection.split(",") if item.strip()}
    endpoints = tuple(e for e in pool.endpoints if e.key.ip in wanted or e.address in wanted)
    if not endpoints:
        raise errors.NoEndpoints(f"none of the endpoints selected by {CONFORMANCE_SELECTION_HEADER} "
                                 f"belongs to InferencePool {pool.ref}")
    return dataclasses.replace(pool, endpoints=endpoints)

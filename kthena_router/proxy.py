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
import random
import time

from multidict import CIMultiDict
from yarl import URL

from kthena_router import errors
from kthena_router.accesslog import AccessLog
from kthena_router.api.hostnames import normalize_host
from kthena_router.auth import Authenticator
from kthena_router.endpoints.outlier import OutlierDetector
from kthena_router.http import HTTPRequest
from kthena_router.http.request import header_lines
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
from kthena_router.upstream import (
    ConnectFailed,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
)
from kthena_router.usage import JSONUsage, SSEUsage

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and proxy credentials: never forwarded in either direction.
HOP_BY_HOP = ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
              "TE", "Trailer", "Transfer-Encoding", "Upgrade")
# Dropped from what goes upstream: hop-by-hop, framing (the router frames the body itself), the objective.
_DROP_REQUEST = frozenset(name.lower().encode() for name in (
    *HOP_BY_HOP, "Content-Length", "Expect", "X-Request-Id", "X-Forwarded-For", "X-Gateway-Inference-Objective"))
# The router sets the model header from the body; a client's own copy must not reach the endpoint beside it.
_DROP_REQUEST_WITH_MODEL = _DROP_REQUEST | {b"x-gateway-model-name"}
_DROP_RESPONSE = frozenset(name.lower().encode() for name in (*HOP_BY_HOP, "Content-Length"))
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_get = dict.get  # request headers are a dict by lower-case name; these skip its case-folding methods
_has = dict.__contains__
_JSON = b"application/json"
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
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


class _Exchange:
    """Mutable per-request context shared by the steps of one request."""

    __slots__ = ("request", "rec", "sse", "upstream_body", "injected_usage", "model_label", "pick")

    def __init__(self, request: HTTPRequest, rec: RequestRecord) -> None:
        self.request = request
        self.rec = rec
        self.sse = False  # the response relayed is an event stream
        self.upstream_body = b""
        self.injected_usage = False
        self.model_label: str | None = None  # set while counted in the active-downstream gauge
        self.pick: PickRequest | None = None  # what the picker saw, for its feedback once an endpoint answers


class Proxy:
    def __init__(self, *, state: RouterState, settings: Settings, metrics: RouterMetrics,
                 access_log: AccessLog, picker: Picker, upstream: UpstreamClient,
                 rng: random.Random | None = None, admission: Admission | None = None,
                 outliers: OutlierDetector | None = None, auth: Authenticator | None = None) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.access_log = access_log
        self.picker = picker
        self.admission = admission
        self.upstream = upstream
        self.auth = auth
        self.outliers = outliers if outliers is not None and outliers.enabled else None
        self.rng = rng or random.Random()

    # --- the boundary -------------------------------------------------------------------------------

    async def handle(self, request: HTTPRequest, port: int) -> None:
        if port == self.settings.port:
            path = request.path
            if path == "/healthz":
                request.respond(200, _HEALTH_OK)
                return
            if path == "/readyz":
                if self.state.ready:
                    request.respond(200, _READY)
                else:
                    request.respond(503, _NOT_READY)
                return
            if path == "/metrics" and self.settings.expose_metrics_on_router_port:
                body, content_type = self.metrics.render(request.headers.get("accept"))
                request.respond(200, body, content_type=content_type.encode())
                return
        rec = RequestRecord(request.method, request.path, _PROTOCOLS.get(request.version, "HTTP/1.1"))
        ex = _Exchange(request, rec)
        state = self.state
        state.request_started()
        try:
            await self._serve(ex, port)
        except errors.RouterError as err:
            self._fail(ex, err)
        except asyncio.CancelledError:
            if not request.response_started:
                rec.status_code = CLIENT_CLOSED
            rec.error_type = rec.error_type or "client_disconnected"
            raise
        except ConnectionResetError:  # writing to a client that has gone away
            rec.error_type = rec.error_type or "client_disconnected"
            if not request.response_started:
                rec.status_code = CLIENT_CLOSED
            request.abort()
        except Exception as exc:  # the last line of defence: a bug must not leak a traceback to clients
            log.exception("unexpected error serving %s %s", request.method, request.path)
            if request.response_started:
                rec.error_type = rec.error_type or "internal_error"
                request.abort()
            else:
                self._fail(ex, errors.RouterError(f"internal error: {type(exc).__name__}"))
        finally:
            state.request_finished()
            rec.t_end = time.perf_counter()
            if ex.model_label is not None:
                self.metrics.downstream_finished(ex.model_label)
            self.metrics.request_done(rec)
            self.access_log.log(rec)

    def _fail(self, ex: _Exchange, err: errors.RouterError) -> None:
        rec = ex.rec
        rec.status_code = err.status
        rec.error_type = err.reason
        rec.error_message = err.message
        request = ex.request
        if request.response_started:
            return
        extra = b"X-Request-Id: " + rec.request_id.encode("latin-1", "replace") + b"\r\n" if rec.request_id else b""
        extra += err.headers
        if err.status in (400, 408, 413, 431) and not request.body_complete:
            request.keep_alive = False  # the rest of the body is not worth reading
        request.respond(err.status, err.body(), extra)

    # --- routing ------------------------------------------------------------------------------------

    async def _serve(self, ex: _Exchange, port: int) -> None:
        request, rec = ex.request, ex.rec
        snap = self.state.snapshot
        table = snap.ports.get(port)
        host = normalize_host(request.host)
        listener = table.select(host) if table is not None else None
        if listener is None:
            raise errors.NoListener(f"no listener on port {port} matches host {host!r}")
        rec.gateway = str(listener.gateway)
        headers = request.headers
        if self.auth is not None:
            await self.auth.authenticate(_get(headers, "authorization"), _get(headers, "x-api-key"))
        request_id = _get(headers, "x-request-id") or f"{self.rng.getrandbits(128):032x}"
        rec.request_id = request_id

        body = await request.read_body()
        method, path = request.method, request.path
        parsed = parse_body(body, request.content_type, required=method == "POST" and path in MODEL_PATHS)
        rec.model = parsed.model or ""
        rec.stream = parsed.stream
        if parsed.model is not None:
            ex.model_label = self.metrics.model_label(parsed.model)
            self.metrics.downstream_started(ex.model_label)

        match = listener.table.match(host, method, path, request.query, headers, parsed.model)
        if match is None:
            raise errors.NoRoute(_no_route_message(method, path, parsed.model))
        rule = match.rule
        rec.http_route = str(rule.route)
        if rule.error is not None:
            raise errors.InvalidBackend(rule.error)
        if rule.redirect is not None:
            self._redirect(ex, listener, match, host)
            return
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
        priority = priority_of(snap.objectives, pool, _get(headers, OBJECTIVE_HEADER)) \
            if snap.objectives else 0

        ex.upstream_body = body
        if parsed.stream and self.settings.stream_usage and parsed.payload is not None \
                and path in USAGE_PATHS and not wants_usage(parsed.payload):
            injected = inject_stream_usage(body, parsed.payload)
            if injected is not None:
                ex.upstream_body = injected
                ex.injected_usage = True
        upstream_path = request.raw_path
        if rule.url_rewrite is not None and rule.url_rewrite.path is not None:
            upstream_path = URL.build(path=rewrite_path(path, match.path, rule.url_rewrite.path)).raw_path
        if request.query_string:
            upstream_path = f"{upstream_path}?{request.query_string}"
        upstream_headers = self._upstream_headers(request, parsed, request_id, match, backend)

        timeouts = rule.timeouts
        forward = self._forward(ex, pool, parsed, upstream_headers, upstream_path, backend, rule,
                                timeouts.backend_request or None, priority)
        if not timeouts.request:
            await forward
            return
        try:
            async with asyncio.timeout(timeouts.request):
                await forward
        except TimeoutError:
            if not request.response_started:
                raise errors.RequestTimeout(
                    f"request timed out after {timeouts.request:g}s (HTTPRoute {rule.route} timeouts.request)"
                ) from None
            await self._abort(ex, errors.RequestTimeout("request timed out while streaming"))

    def _upstream_headers(self, request: HTTPRequest, parsed: ParsedBody, request_id: str,
                          match: RouteMatchResult, backend: Backend) -> bytes:
        """The request header lines for the endpoint: the client's minus hop-by-hop, plus the proxy's own."""
        headers = request.headers
        drop = _DROP_REQUEST if parsed.model is None else _DROP_REQUEST_WITH_MODEL
        connection = _get(headers, "connection")
        if connection:
            drop = drop | {token.strip().lower().encode("latin-1") for token in connection.split(",")}
        lines = [name + b": " + value + b"\r\n" for name, value in headers.raw if name.lower() not in drop]
        if not _has(headers, "host"):
            lines.append(b"Host: " + request.host.encode("latin-1") + b"\r\n")
        extra = [("X-Request-Id", request_id)]
        if parsed.model is not None:
            extra.append(("X-Gateway-Model-Name", parsed.model))
        remote = request.remote
        prior = _get(headers, "x-forwarded-for")
        if remote:
            extra.append(("X-Forwarded-For", f"{prior}, {remote}" if prior else remote))
        elif prior:
            extra.append(("X-Forwarded-For", prior))
        if not _has(headers, "x-forwarded-proto"):
            extra.append(("X-Forwarded-Proto", request.scheme))
        lines.append(header_lines(extra))
        rule = match.rule
        if rule.request_headers is not None or backend.request_headers is not None or \
                (rule.url_rewrite is not None and rule.url_rewrite.hostname):
            modified = CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                                   for name, value in _split_lines(b"".join(lines)))
            if rule.request_headers is not None:
                apply_header_modifier(modified, rule.request_headers)
            if backend.request_headers is not None:
                apply_header_modifier(modified, backend.request_headers)
            if rule.url_rewrite is not None and rule.url_rewrite.hostname:
                modified["Host"] = rule.url_rewrite.hostname
            return header_lines(modified.items())
        return b"".join(lines)

    def _redirect(self, ex: _Exchange, listener: ListenerRoutes, match: RouteMatchResult, host: str) -> None:
        request = ex.request
        redirect = match.rule.redirect
        assert redirect is not None
        location = redirect_location(request.scheme, host, listener.port, request.path,
                                     request.query_string, match.path, redirect)
        ex.rec.status_code = redirect.status_code
        request.respond(redirect.status_code, b"", header_lines((("Location", location),)), content_type=b"")

    # --- upstream -----------------------------------------------------------------------------------

    async def _forward(self, ex: _Exchange, pool: Pool, parsed: ParsedBody, headers: bytes,
                       path: str, backend: Backend, rule, backend_timeout: float | None,
                       priority: int = 0) -> None:
        rec = ex.rec
        request = ex.request
        if self.settings.conformance_test_mode:
            pool = _restrict_for_conformance(pool, request.headers.get(CONFORMANCE_SELECTION_HEADER))
        if self.admission is not None:
            await self.admission.admit(pool, priority)  # may wait while the pool is saturated
        pick_request = ex.pick = PickRequest(parsed.model, parsed.payload, request.headers)
        tried: list[EndpointKey] = []
        attempts = min(1 + self.settings.max_retries, len(pool.endpoints))
        last_error: Exception | None = None
        rec.t_routed = time.perf_counter()
        for _ in range(attempts):
            outliers = self.outliers
            endpoint = self.picker.pick(pool, pick_request,
                                        tried if outliers is None else outliers.excluded(pool, tried))
            if endpoint is None:
                break
            tried.append(endpoint.key)
            rec.upstream_attempts += 1
            rec.selected_endpoint = endpoint.address
            rec.selected_pod = str(endpoint.pod)
            try:
                await self._attempt(ex, endpoint, headers, path, backend, rule, backend_timeout, parsed.model)
                self.picker.finished(pick_request, endpoint, rec)
                return
            except ConnectFailed as exc:
                if request.response_started:
                    raise
                last_error = exc
                log.warning("connection to %s failed (%s); %s", endpoint.address, exc,
                            "trying another endpoint" if len(tried) < attempts else "giving up")
        raise errors.UpstreamFailed(
            f"could not reach any endpoint of InferencePool {pool.ref}"
            + (f": {last_error}" if last_error else ""))

    async def _attempt(self, ex: _Exchange, endpoint: Endpoint, headers: bytes, path: str,
                       backend: Backend, rule, backend_timeout: float | None, model: str | None) -> None:
        rec = ex.rec
        inflight = self.state.inflight
        model_label = self.metrics.model_label(model or "")
        pool_label = rec.inference_pool
        inflight.acquire(endpoint.key)
        self.metrics.upstream_started(endpoint.address, pool_label, model_label)
        try:
            if not rec.t_upstream_start:
                rec.t_upstream_start = time.perf_counter()
            exchange = self._exchange(ex, endpoint, headers, path, backend, rule)
            if backend_timeout is None:
                await exchange
                return
            try:
                async with asyncio.timeout(backend_timeout):
                    await exchange
            except TimeoutError:
                if self.outliers is not None:
                    self.outliers.failure(endpoint.key)
                if not ex.request.response_started:
                    raise errors.UpstreamTimeout(
                        f"endpoint {endpoint.address} did not respond within {backend_timeout:g}s "
                        f"(HTTPRoute {rule.route} timeouts.backendRequest)") from None
                await self._abort(ex, errors.UpstreamTimeout("backend request timed out while streaming"))
        finally:
            inflight.release(endpoint.key)
            self.metrics.upstream_finished(endpoint.address, pool_label, model_label)

    def _response_head(self, ex: _Exchange, raw_headers, rule, backend: Backend) -> bytes:
        """The endpoint's response headers for the client: hop-by-hop dropped, the proxy's own added."""
        lines = []
        has_request_id = False
        named: set[bytes] | None = None  # headers named by the endpoint's Connection header (hop-by-hop too)
        for name, value in raw_headers:
            lowered = name.lower()
            if lowered in _DROP_RESPONSE:
                if lowered == b"connection":
                    named = {token.strip().lower() for token in value.split(b",")} - {b"close", b"keep-alive"}
                continue
            if lowered == b"x-request-id":
                has_request_id = True
            lines.append(name + b": " + value + b"\r\n")
        if named:
            lines = [line for line in lines if line.split(b":", 1)[0].lower() not in named]
        rec = ex.rec
        if not has_request_id:
            lines.append(b"X-Request-Id: " + rec.request_id.encode("latin-1", "replace") + b"\r\n")
        if self.settings.conformance_test_mode:
            lines.append(f"{CONFORMANCE_SERVED_HEADER}: {rec.selected_endpoint}\r\n".encode())
        head = b"".join(lines)
        if rule.response_headers is not None or backend.response_headers is not None:
            modified = CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                                   for name, value in _split_lines(b"".join(lines)))
            if rule.response_headers is not None:
                apply_header_modifier(modified, rule.response_headers)
            if backend.response_headers is not None:
                apply_header_modifier(modified, backend.response_headers)
            head = header_lines(modified.items())
        return head

    async def _exchange(self, ex: _Exchange, endpoint: Endpoint, headers: bytes, path: str,
                        backend: Backend, rule) -> None:
        request, rec = ex.request, ex.rec
        body = ex.upstream_body
        method = request.method
        head = b"".join((f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), headers,
                         b"Content-Length: %d\r\n\r\n" % len(body) if body or method in _BODY_METHODS else b"\r\n"))
        key = endpoint.key
        outliers = self.outliers
        try:
            upstream = await self.upstream.send(key.ip, key.port, head, body, head_only=method == "HEAD")
        except UpstreamError as exc:
            if outliers is not None:
                outliers.failure(key)
            if isinstance(exc, ConnectFailed):
                raise  # nothing was sent: the caller may try another endpoint
            raise _router_error(exc) from None
        try:
            rec.t_first_byte = time.perf_counter()
            status = upstream.status
            rec.upstream_status_code = rec.status_code = status
            if status < 500:
                if ex.pick is not None:
                    self.picker.served(ex.pick, endpoint)
                if outliers is not None:
                    outliers.success(key)
            elif outliers is not None:
                outliers.failure(key)
            head = self._response_head(ex, upstream.headers, rule, backend)
            content_type = upstream.header(b"content-type")
            if content_type is not None and content_type.startswith(b"text/event-stream"):
                ex.sse = True
                request.start(status, upstream.reason, head, None)
                await self._relay_sse(ex, upstream)
            else:
                await self._relay_plain(ex, upstream, head)
            rec.t_upstream_end = time.perf_counter()
            request.finish()
            upstream.release()
        except UpstreamError as exc:
            if outliers is not None:
                outliers.failure(key)
            error = _router_error(exc)
            if not request.response_started:
                raise error from None
            await self._abort(ex, error)
        finally:
            upstream.abort()  # nothing to do after release()

    async def _relay_sse(self, ex: _Exchange, upstream: UpstreamResponse) -> None:
        rec = ex.rec
        scanner = SSEUsage(suppress=ex.injected_usage)
        send = ex.request.send
        read = upstream.read
        while chunk := await read():
            data = scanner.feed(chunk)
            if data:
                if not rec.t_first_token:
                    rec.t_first_token = time.perf_counter()
                await send(data)
        rest = scanner.flush()
        if rest:
            await send(rest)
        rec.input_tokens = scanner.prompt_tokens
        rec.output_tokens = scanner.completion_tokens

    async def _relay_plain(self, ex: _Exchange, upstream: UpstreamResponse, head: bytes) -> None:
        """Relay a body as it comes; the head goes out with its first piece (one write when it is whole)."""
        request = ex.request
        usage = JSONUsage() if request.path in USAGE_PATHS else None
        first = await upstream.read()
        if usage is not None and first:
            usage.feed(first)
        request.start(upstream.status, upstream.reason, head, upstream.content_length, first)
        read, send = upstream.read, request.send
        while chunk := await read():
            if usage is not None:
                usage.feed(chunk)
            await send(chunk)
        if usage is not None:
            ex.rec.input_tokens, ex.rec.output_tokens = usage.tokens()

    async def _abort(self, ex: _Exchange, err: errors.RouterError) -> None:
        """End a response whose headers are already sent: an SSE error event, else a cut connection."""
        rec = ex.rec
        rec.error_type = err.reason
        rec.error_message = err.message
        request = ex.request
        if ex.sse and not request.client_gone:
            request.finish(b"data: " + err.body() + b"\n\n")
            return
        request.abort()


def _router_error(exc: UpstreamError) -> errors.RouterError:
    if isinstance(exc, UpstreamTimeout):
        return errors.UpstreamTimeout(str(exc))
    return errors.UpstreamFailed(str(exc))


def _split_lines(block: bytes):
    """(name, value) pairs of serialized header lines."""
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            yield name.strip(), value.strip()


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

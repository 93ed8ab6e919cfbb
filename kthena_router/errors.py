"""Every failure the router reports, as data: HTTP status, OpenAI error type, code and a metric label.

Code anywhere raises a `RouterError` subclass; the one boundary in `proxy.py` turns it into an
OpenAI-style JSON error object, the `error_type` metric label and the access-log field. Once response
headers have gone out, the boundary ends the stream instead (see `proxy.py`).
"""

from __future__ import annotations

import orjson


class RouterError(Exception):
    status = 500
    type = "server_error"
    reason = "internal_error"  # metric label and access-log error type
    headers = b""  # extra response header lines

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.reason)


def error_body(message: str, type_: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}})


class BadRequest(RouterError):
    status = 400
    type = "invalid_request_error"
    reason = "request_parsing"


class MalformedHTTP(BadRequest):
    """The bytes are not valid HTTP/1.x; the connection is closed after the answer."""
    reason = "bad_http_request"


class Unauthorized(RouterError):
    status = 401
    type = "invalid_request_error"
    reason = "invalid_api_key"
    headers = b'WWW-Authenticate: Bearer realm="kthena-router"\r\n'


class NoListener(RouterError):
    status = 404
    type = "not_found_error"
    reason = "listener_not_found"


class NoRoute(RouterError):
    status = 404
    type = "not_found_error"
    reason = "route_not_found"


class BodyTooLarge(RouterError):
    status = 413
    type = "invalid_request_error"
    reason = "request_too_large"


class Overloaded(RouterError):
    status = 429
    type = "rate_limit_error"
    reason = "overloaded"


class InvalidBackend(RouterError):
    status = 500
    type = "server_error"
    reason = "invalid_backend"


class UpstreamFailed(RouterError):
    status = 502
    type = "upstream_error"
    reason = "upstream_error"


class NoEndpoints(RouterError):
    status = 503
    type = "service_unavailable_error"
    reason = "no_endpoints"


class QueueTimeout(RouterError):
    """A request waited in the router's admission queue longer than `--queue-timeout`."""

    status = 503
    type = "service_unavailable_error"
    reason = "queue_timeout"


class UpstreamTimeout(RouterError):
    status = 504
    type = "timeout_error"
    reason = "upstream_timeout"


class RequestTimeout(RouterError):
    status = 504
    type = "timeout_error"
    reason = "request_timeout"


class ClientTimeout(RouterError):
    """The client was too slow sending its request head or body."""
    status = 408
    type = "invalid_request_error"
    reason = "client_timeout"


class HeadersTooLarge(RouterError):
    status = 431
    type = "invalid_request_error"
    reason = "request_header_too_large"


class ListenerBusy(RouterError):
    """The listener's connection or request limit is reached."""
    status = 503
    type = "server_error"
    reason = "listener_overloaded"


# The statuses the router itself produces, for the README's error table and its test.
ERROR_TABLE: tuple[type[RouterError], ...] = (
    BadRequest, MalformedHTTP, Unauthorized, NoListener, NoRoute, BodyTooLarge, Overloaded, InvalidBackend, UpstreamFailed,
    NoEndpoints, QueueTimeout, UpstreamTimeout, RequestTimeout, ClientTimeout, HeadersTooLarge, ListenerBusy,
)

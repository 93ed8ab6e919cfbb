"""Failures of one exchange with an endpoint, typed by what is still safe to do.

`ConnectFailed` means nothing reached the endpoint, so the request may go elsewhere; the others mean the
endpoint may have acted on it. Every message names the endpoint as host:port. Mapping these to HTTP
statuses is the proxy's business (`kthena_router/errors.py`), not this package's.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base of every failure raised by the upstream client."""


class ConnectFailed(UpstreamError):
    """No connection could be made (refused, unreachable, timed out): nothing was sent."""


class UpstreamClosed(UpstreamError):
    """The endpoint closed or reset the connection after the request went out, before the response ended.

    `response_started` tells whether any byte of the response had arrived.
    """

    def __init__(self, message: str, *, response_started: bool) -> None:
        super().__init__(message)
        self.response_started = response_started


class UpstreamTimeout(UpstreamError):
    """The endpoint sent no response head, or no further body bytes, within the read timeout."""


class MalformedResponse(UpstreamError):
    """The endpoint's bytes are not a valid HTTP/1.x response."""

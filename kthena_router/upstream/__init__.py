"""HTTP/1.1 client for the router's requests to endpoints: keep-alive pools, llhttp parsing, typed failures.

`client.py` holds the pool and the API (`UpstreamClient.send`), `protocol.py` the connection and the
response it carries, `errors.py` the failures. Nothing here knows about routes, pools of endpoints or
OpenAI: the proxy prepares the request head and maps the failures.
"""

from kthena_router.upstream.client import UpstreamClient
from kthena_router.upstream.errors import (
    ConnectFailed,
    MalformedResponse,
    UpstreamClosed,
    UpstreamError,
    UpstreamTimeout,
)
from kthena_router.upstream.protocol import UpstreamResponse

__all__ = [
    "ConnectFailed",
    "MalformedResponse",
    "UpstreamClient",
    "UpstreamClosed",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
]

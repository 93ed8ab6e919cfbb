"""The router's own HTTP/1.1 server for the inference listeners (asyncio protocol + the llhttp parser).

A general-purpose framework costs more per request than the rest of the router together; this server does
only what a proxy needs: parse a request head once, hand the handler its body as bytes, and write what the
handler sends with as few copies and system calls as possible. It also enforces the listener limits.
"""

from kthena_router.http.request import Headers, HTTPRequest
from kthena_router.http.server import HTTPServer, ServerLimits

__all__ = ["HTTPRequest", "HTTPServer", "Headers", "ServerLimits"]

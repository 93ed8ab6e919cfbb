"""What the router learned about one request, filled in as it goes; read by metrics and the access log."""

from __future__ import annotations

import time


class RequestRecord:
    """Per-request facts. Times are `time.perf_counter()` readings (0.0 = did not happen)."""

    __slots__ = (
        "start", "start_wall", "method", "path", "protocol", "status_code", "error_type", "error_message",
        "model", "request_id", "stream", "gateway", "http_route", "inference_pool", "selected_endpoint",
        "selected_pod", "upstream_status_code", "upstream_attempts", "input_tokens", "output_tokens",
        "t_routed", "t_upstream_start", "t_first_byte", "t_first_token", "t_upstream_end", "t_end",
    )

    def __init__(self, method: str, path: str, protocol: str = "HTTP/1.1") -> None:
        self.start = time.perf_counter()
        self.start_wall = time.time()
        self.method = method
        self.path = path  # as received, before any URLRewrite, without the query
        self.protocol = protocol
        self.status_code = 0
        self.error_type = ""  # a reason label such as "route_not_found", "upstream_timeout"; "" on success
        self.error_message = ""
        self.model = ""  # the requested model from the body ("" when there is none)
        self.request_id = ""
        self.stream = False
        self.gateway = ""  # "namespace/name"
        self.http_route = ""  # "namespace/name"
        self.inference_pool = ""  # "namespace/name"
        self.selected_endpoint = ""  # "ip:port"
        self.selected_pod = ""  # "namespace/name"
        self.upstream_status_code = 0
        self.upstream_attempts = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.t_routed = 0.0  # body parsed, route matched, endpoint picked
        self.t_upstream_start = 0.0  # first attempt sent
        self.t_first_byte = 0.0  # upstream response headers received
        self.t_first_token = 0.0  # first streamed data chunk relayed (streaming only)
        self.t_upstream_end = 0.0  # upstream body fully relayed
        self.t_end = 0.0  # response finished

    @property
    def duration(self) -> float:
        return (self.t_end or time.perf_counter()) - self.start

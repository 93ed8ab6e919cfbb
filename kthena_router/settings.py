"""Process settings, built once from the command line and passed down (never read from a global)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    port: int = 8080
    host: str = "0.0.0.0"
    metrics_port: int = 9090
    debug_port: int = 15000  # always bound to 127.0.0.1
    config_dir: str | None = None
    reload_interval: float = 0.5
    namespace: str = "default"  # POD_NAMESPACE: where the implied `default` Gateway lives
    enable_gateway_api: bool = True
    enable_inference_extension: bool = True
    expose_metrics_on_router_port: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_retries: int = 2  # further endpoints tried after a connection failure, before any byte is sent
    connect_timeout: float = 5.0
    stream_usage: bool = True  # ask streaming servers for usage and hide the extra chunk from clients
    access_log: bool = True
    access_log_format: Literal["text", "json"] = "text"
    access_log_output: str = "stdout"
    drain_timeout: float = 300.0
    drain_delay: float = 0.0  # on SIGTERM: /readyz fails at once, the listeners close this much later
    # Limits on what clients may send and hold, per listener.
    max_header_bytes: int = 64 * 1024  # request line plus all header lines
    max_headers: int = 100
    header_read_timeout: float = 10.0  # from connection open (or the previous response) to the end of the headers
    body_read_timeout: float = 30.0  # longest pause between two pieces of a request body
    keepalive_timeout: float = 75.0  # an idle client connection is closed after this
    max_connections: int = 10000  # open client connections per listener; more are answered 503 and closed
    max_streams: int = 4096  # requests in progress per listener; more get 503
    # Upstream connections to endpoints.
    upstream_read_timeout: float = 300.0  # longest silence from an endpoint while its response is awaited or read
    upstream_keepalive_connections: int = 256  # idle connections kept per endpoint
    # Passive outlier detection: endpoints that keep failing are skipped for a while.
    outlier_consecutive_failures: int = 5
    outlier_base_ejection: float = 30.0  # doubled for each ejection in a row, up to 10x
    outlier_max_ejection_percent: int = 50  # never skip more of a pool than this
    # Processes serving the same ports (SO_REUSEPORT); each keeps its own state.
    workers: int = 1
    # Authentication of clients; off unless one of these is set.
    api_keys_file: str | None = None  # one key per line (or `name: key`); re-read when it changes (a mounted Secret)
    api_keys_secret: str | None = None  # NAMESPACE/NAME of a Secret whose data entries are keys (watched)
    jwks_uri: str | None = None  # http(s) URL or file of the JSON Web Key Set that signs accepted JWTs
    jwt_issuer: str | None = None
    jwt_audiences: tuple[str, ...] = ()
    jwks_refresh_interval: float = 300.0
    simulate: bool = False
    simulate_model: str = "Qwen2.5-0.5B-Instruct"
    log_level: str = "info"
    # Scheduling: the picker pipeline and the endpoint state it reads.
    scheduler_config: str | None = None  # kthena-shaped YAML; None = the built-in defaults
    scrape_interval: float = 0.05
    max_scrapes_per_second: float = 500.0  # busy endpoints' scrapes, per process; 0 = no limit
    metrics_stale_after: float = 2.0
    # Saturation and admission (InferenceObjective priorities).
    saturation_queue_threshold: int = 5
    saturation_kv_threshold: float = 0.8
    max_queued_requests: int = 1000  # per pool
    queue_timeout: float = 30.0
    # Kubernetes mode (used when no --config-dir is given).
    kubeconfig: str | None = None
    watch_namespace: str | None = None
    leader_elect: bool = True
    leader_election_id: str = "kthena-router"
    pod_name: str = ""  # lease holder identity; defaults to the host name
    kube_api_qps: float = 0.0  # 0: the client's default
    kube_api_burst: int = 0
    # The inference extension's conformance test mode (endpoint selection by request header).
    conformance_test_mode: bool = False

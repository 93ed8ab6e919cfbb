"""Command line: `kthena-router [flags]` serves; `kthena-router status --config-dir DIR` prints statuses.

Flag names follow kthena's router where they overlap (`--port`, `--metrics-port`, `--debug-port`,
`--tls-cert`, `--tls-key`, `--enable-gateway-api`, `--enable-gateway-api-inference-extension`,
`--expose-metrics-on-router-port`), and so do the environment variables it reads (POD_NAMESPACE,
DRAIN_TIMEOUT, ACCESS_LOG_ENABLED, ACCESS_LOG_FORMAT, ACCESS_LOG_OUTPUT).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kthena_router import __version__
from kthena_router.api.httproute import parse_duration
from kthena_router.settings import DEFAULT_MAX_BODY_BYTES, Settings

if TYPE_CHECKING:
    from kthena_router.app import RouterApp
    from kthena_router.sources.kube import KubeApi, KubeSource, WatchTimings
    from kthena_router.sources.leader import LeaseTimings
    from kthena_router.sources.status import StatusWriter

log = logging.getLogger("kthena_router")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _seconds(value: str) -> float:
    """Seconds as a number (`30`, `0.5`) or a duration (`5m`, `300s`, `1h30m`, `500ms`)."""
    try:
        seconds = float(value)
    except ValueError:
        parsed = parse_duration(value.strip())
        if parsed is None:
            raise argparse.ArgumentTypeError(f"expected seconds or a duration like 30s or 5m, got {value!r}") from None
        return parsed
    if seconds < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return seconds


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="kthena-router",
        description="OpenAI-compatible router for LLM inference: Gateway API + Inference Extension, natively.",
    )
    p.add_argument("--version", action="version", version=f"kthena-router {__version__}")
    g = p.add_argument_group("listeners")
    g.add_argument("--port", type=_port, default=8080,
                   help="inference port; also serves /healthz and /readyz and hosts the implied default Gateway "
                        "(default 8080)")
    g.add_argument("--host", default="0.0.0.0", help="address to bind inference and metrics ports (default 0.0.0.0)")
    g.add_argument("--metrics-port", type=_port, default=9090, help="Prometheus /metrics port; 0 disables (default 9090)")
    g.add_argument("--debug-port", type=_port, default=15000,
                   help="debug dump port, bound to 127.0.0.1 only; 0 disables (default 15000)")
    g.add_argument("--expose-metrics-on-router-port", type=_bool, nargs="?", const=True, default=False,
                   help="also serve /metrics on --port")
    g.add_argument("--tls-cert", help="TLS certificate for --port (with --tls-key)")
    g.add_argument("--tls-key", help="TLS private key for --port (with --tls-cert)")
    g = p.add_argument_group("configuration")
    g.add_argument("--config-dir", help="read GatewayClass/Gateway/HTTPRoute/InferencePool/Pod/... manifests from "
                                        "this directory and reload them when they change")
    g.add_argument("--reload-interval", type=_seconds, default=0.5, help="how often --config-dir is checked (default 0.5s)")
    g.add_argument("--namespace", default=env.get("POD_NAMESPACE", "default"),
                   help="namespace of the implied `default` Gateway (env POD_NAMESPACE; default 'default')")
    g.add_argument("--enable-gateway-api", type=_bool, nargs="?", const=True, default=True,
                   help="serve Gateway API resources (default true)")
    g.add_argument("--enable-gateway-api-inference-extension", type=_bool, nargs="?", const=True, default=True,
                   help="serve InferencePool / InferenceObjective resources (default true)")
    g = p.add_argument_group("requests")
    g.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                   help="largest request body accepted; larger gets 413 (default 32 MiB)")
    g.add_argument("--max-retries", type=int, default=2,
                   help="other endpoints tried after a connection failure, before any byte was sent (default 2)")
    g.add_argument("--connect-timeout", type=_seconds, default=5.0, help="upstream connect timeout (default 5s)")
    g.add_argument("--stream-usage", type=_bool, nargs="?", const=True, default=True,
                   help="ask streaming model servers for token usage and hide the extra chunk from clients "
                        "that did not ask for it (default true)")
    g.add_argument("--drain-timeout", type=_seconds, default=_seconds(env.get("DRAIN_TIMEOUT", "300")),
                   help="on SIGTERM, how long in-flight requests may take to finish (env DRAIN_TIMEOUT; default 300s)")
    g.add_argument("--drain-delay", type=_seconds, default=_seconds(env.get("DRAIN_DELAY", "0")),
                   help="on SIGTERM, /readyz fails at once and the listeners keep accepting this long, so load "
                        "balancers notice first (env DRAIN_DELAY; default 0s)")
    g.add_argument("--upstream-read-timeout", type=_seconds, default=300.0,
                   help="longest silence from an endpoint while its response is awaited or streamed; then 504 "
                        "or an error event (default 300s)")
    g.add_argument("--upstream-keepalive-connections", type=_positive_int, default=256,
                   help="idle connections kept open per endpoint (default 256)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-header-bytes", type=_positive_int, default=64 * 1024,
                   help="largest request head (request line and headers); larger gets 431 (default 64 KiB)")
    g.add_argument("--max-headers", type=_positive_int, default=100,
                   help="most header lines in a request; more gets 431 (default 100)")
    g.add_argument("--header-read-timeout", type=_seconds, default=10.0,
                   help="time a client has to send a complete request head; then 408 (default 10s)")
    g.add_argument("--body-read-timeout", type=_seconds, default=30.0,
                   help="longest pause within a request body upload; then 408 (default 30s)")
    g.add_argument("--keepalive-timeout", type=_seconds, default=75.0,
                   help="idle client connections are closed after this (default 75s)")
    g.add_argument("--max-connections", type=_positive_int, default=10000,
                   help="open client connections per listener; more are answered 503 and closed (default 10000)")
    g.add_argument("--max-streams", type=_positive_int, default=4096,
                   help="requests in progress per listener; more get 503 (default 4096)")
    g = p.add_argument_group("outlier detection")
    g.add_argument("--outlier-consecutive-failures", type=int, default=5,
                   help="failures in a row (connect errors, resets, 5xx) that take an endpoint out of picking; "
                        "0 disables (default 5)")
    g.add_argument("--outlier-base-ejection", type=_seconds, default=30.0,
                   help="how long an endpoint is left out the first time; doubles on each repeat, up to 10x "
                        "(default 30s)")
    g.add_argument("--outlier-max-ejection-percent", type=int, default=50,
                   help="never leave out more than this share of a pool's endpoints (default 50)")
    g = p.add_argument_group("processes")
    g.add_argument("--workers", type=_positive_int, default=1,
                   help="processes serving the same ports with SO_REUSEPORT, each with its own state (default 1)")
    g = p.add_argument_group("authentication (off unless configured)")
    g.add_argument("--api-keys-file", help="file of accepted API keys, one per line or `name: key`; re-read when "
                                           "it changes (mount a Kubernetes Secret here)")
    g.add_argument("--api-keys-secret", metavar="NAMESPACE/NAME",
                   help="Kubernetes Secret whose data entries are accepted API keys (entry name = who), "
                        "watched through the API; needs list and watch on that Secret")
    g.add_argument("--jwks-uri", help="URL or file of the JSON Web Key Set; enables JWT bearer authentication")
    g.add_argument("--jwt-issuer", help="required `iss` of accepted JWTs")
    g.add_argument("--jwt-audiences", default="",
                   help="comma-separated; an accepted JWT's `aud` must name one of them")
    g.add_argument("--jwks-refresh-interval", type=_seconds, default=300.0,
                   help="how often the key set is fetched again (default 5m); unknown key ids also trigger a fetch")
    g = p.add_argument_group("scheduling")
    g.add_argument("--scheduler-config", help="scheduler YAML in kthena's shape (scheduler.pluginConfig, "
                                              "scheduler.plugins.Filter/Score); default: the built-in pipeline")
    g.add_argument("--scrape-interval", type=_seconds, default=0.05,
                   help="how often each endpoint's /metrics is read (default 50ms)")
    g.add_argument("--max-scrapes-per-second", type=_rate, default=500.0,
                   help="at most this many /metrics reads a second of endpoints with work, per process: with "
                        "more such endpoints than this x --scrape-interval each is read less often (up to 10 "
                        "intervals); 0 = no limit (default 500)")
    g.add_argument("--metrics-stale-after", type=_seconds, default=2.0,
                   help="endpoint metrics older than this are not trusted (default 2s)")
    g.add_argument("--saturation-queue-threshold", type=int, default=5,
                   help="an endpoint with more requests waiting than this is saturated (default 5)")
    g.add_argument("--saturation-kv-threshold", type=float, default=0.8,
                   help="an endpoint with more KV-cache use than this is saturated (default 0.8)")
    g.add_argument("--max-queued-requests", type=int, default=1000,
                   help="requests held in the router per saturated pool before shedding (default 1000)")
    g.add_argument("--queue-timeout", type=_seconds, default=30.0,
                   help="longest a request waits in the router's queue before a 503 (default 30s)")
    g.add_argument("--conformance-test-mode", type=_bool, nargs="?", const=True, default=False,
                   help="honour the inference extension conformance header test-epp-endpoint-selection and "
                        "report x-conformance-test-served-endpoint (tests only; default false)")
    g = p.add_argument_group("kubernetes (used when --config-dir is not given)")
    g.add_argument("--kubeconfig", default=env.get("KUBECONFIG"),
                   help="kubeconfig file (env KUBECONFIG); default: in-cluster configuration")
    g.add_argument("--watch-namespace", help="only watch this namespace (default: all namespaces)")
    g.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                   help="only the Lease holder writes status; every replica serves traffic (default true)")
    g.add_argument("--leader-election-id", default="kthena-router", help="name of the Lease (default kthena-router)")
    g.add_argument("--pod-name", default=env.get("POD_NAME", ""),
                   help="identity in the Lease (env POD_NAME; default: the host name)")
    g.add_argument("--kube-api-qps", type=float, default=0.0, help="client-side API request rate; 0 = default")
    g.add_argument("--kube-api-burst", type=int, default=0, help="client-side API burst; 0 = default")
    g = p.add_argument_group("logging")
    g.add_argument("--access-log", type=_bool, nargs="?", const=True,
                   default=_bool(env.get("ACCESS_LOG_ENABLED", "true")),
                   help="one line per request (env ACCESS_LOG_ENABLED; default true)")
    g.add_argument("--access-log-format", choices=("text", "json"), default=env.get("ACCESS_LOG_FORMAT", "text"),
                   help="text (kthena's layout) or json (env ACCESS_LOG_FORMAT; default text)")
    g.add_argument("--access-log-output", default=env.get("ACCESS_LOG_OUTPUT", "stdout"),
                   help="stdout, stderr or a file path (env ACCESS_LOG_OUTPUT; default stdout)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    g = p.add_argument_group("demo")
    g.add_argument("--simulate", action="store_true",
                   help="start a simulated vLLM server at every loopback endpoint of every pool")
    g.add_argument("--simulate-model", default="Qwen2.5-0.5B-Instruct", help="model the simulators serve")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("kthena-router: --tls-cert and --tls-key must be given together")
    if args.enable_gateway_api_inference_extension and not args.enable_gateway_api:
        log.warning("--enable-gateway-api-inference-extension has no effect without --enable-gateway-api: "
                    "InferencePools are only reached through HTTPRoutes")
    return Settings(
        port=args.port, host=args.host, metrics_port=args.metrics_port, debug_port=args.debug_port,
        config_dir=args.config_dir, reload_interval=args.reload_interval, namespace=args.namespace,
        enable_gateway_api=args.enable_gateway_api,
        enable_inference_extension=args.enable_gateway_api_inference_extension,
        expose_metrics_on_router_port=args.expose_metrics_on_router_port,
        tls_cert=args.tls_cert, tls_key=args.tls_key, max_body_bytes=args.max_body_bytes,
        max_retries=max(0, args.max_retries), connect_timeout=args.connect_timeout,
        stream_usage=args.stream_usage, access_log=args.access_log, access_log_format=args.access_log_format,
        access_log_output=args.access_log_output, drain_timeout=args.drain_timeout, simulate=args.simulate,
        simulate_model=args.simulate_model, log_level=args.log_level,
        scheduler_config=args.scheduler_config, scrape_interval=args.scrape_interval,
        max_scrapes_per_second=args.max_scrapes_per_second,
        metrics_stale_after=args.metrics_stale_after, saturation_queue_threshold=args.saturation_queue_threshold,
        saturation_kv_threshold=args.saturation_kv_threshold, max_queued_requests=args.max_queued_requests,
        queue_timeout=args.queue_timeout, kubeconfig=args.kubeconfig, watch_namespace=args.watch_namespace,
        leader_elect=args.leader_elect, leader_election_id=args.leader_election_id, pod_name=args.pod_name,
        kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst,
        conformance_test_mode=args.conformance_test_mode,
        drain_delay=args.drain_delay, upstream_read_timeout=args.upstream_read_timeout,
        upstream_keepalive_connections=args.upstream_keepalive_connections,
        max_header_bytes=args.max_header_bytes, max_headers=args.max_headers,
        header_read_timeout=args.header_read_timeout, body_read_timeout=args.body_read_timeout,
        keepalive_timeout=args.keepalive_timeout, max_connections=args.max_connections,
        max_streams=args.max_streams, outlier_consecutive_failures=max(0, args.outlier_consecutive_failures),
        outlier_base_ejection=args.outlier_base_ejection,
        outlier_max_ejection_percent=min(100, max(0, args.outlier_max_ejection_percent)),
        workers=args.workers, api_keys_file=args.api_keys_file, api_keys_secret=args.api_keys_secret,
        jwks_uri=args.jwks_uri, jwt_issuer=args.jwt_issuer,
        jwt_audiences=tuple(a.strip() for a in args.jwt_audiences.split(",") if a.strip()),
        jwks_refresh_interval=args.jwks_refresh_interval,
    )


def status_main(argv: Sequence[str]) -> int:
    from kthena_router.app import reconcile_options
    from kthena_router.reconcile import format_statuses, reconcile
    from kthena_router.sources.files import FileSource

    p = argparse.ArgumentParser(prog="kthena-router status",
                                description="Print the status conditions the router computes for a manifest directory.")
    p.add_argument("--config-dir", required=True)
    p.add_argument("--port", type=_port, default=8080, help="the router's --port (where the default Gateway listens)")
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        loaded = FileSource(args.config_dir).reload()
    except FileNotFoundError as exc:
        print(f"kthena-router status: {exc}", file=sys.stderr)
        return 2
    settings = Settings(port=args.port, namespace=args.namespace)
    result = reconcile(loaded.resources, reconcile_options(settings))
    if args.output == "json":
        import orjson

        sys.stdout.write(orjson.dumps(result.statuses.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(result.statuses.to_dict(), sort_keys=False))
    else:
        sys.stdout.write(format_statuses(result.statuses))
    for error in loaded.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if loaded.errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = settings_from_args(args)
    from kthena_router.scheduling.config import load_scheduler_config
    from kthena_router.scheduling.framework import ConfigError

    try:  # a bad scheduler config stops the router before anything starts, with one clear line
        load_scheduler_config(settings.scheduler_config)
    except ConfigError as exc:
        print(f"kthena-router: --scheduler-config: {exc}", file=sys.stderr)
        return 2
    from kthena_router.auth import AuthConfigError, Authenticator

    try:  # likewise an unreadable --api-keys-file or a malformed --api-keys-secret
        Authenticator.from_settings(settings)
    except AuthConfigError as exc:
        print(f"kthena-router: {exc}", file=sys.stderr)
        return 2
    for name, value in sorted(vars(args).items()):
        log.debug("flag %s=%s", name, value)
    from kthena_router.workers import supervise, worker_index

    index = worker_index()
    if settings.workers > 1 and index is None:
        return supervise(argv, settings.workers)
    if index:  # workers after the first: their own side ports, no simulators
        settings = dataclasses.replace(
            settings, metrics_port=settings.metrics_port + index if settings.metrics_port else 0,
            debug_port=settings.debug_port + index if settings.debug_port else 0, simulate=False)
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency; this only helps on platforms without wheels
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    try:
        runner(_serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: Settings) -> None:
    from kthena_router.app import RouterApp

    if settings.config_dir is not None:
        await _run_app(RouterApp(settings))
        return
    from kthena_router.sources.kube import KubeApi, KubeConfigMissing, api_client

    try:
        client = await api_client(settings.kubeconfig)
    except KubeConfigMissing as exc:
        raise SystemExit(f"kthena-router: no Kubernetes configuration ({exc}); "
                         "pass --config-dir DIR or --kubeconfig FILE") from None
    try:
        from kthena_router.workers import worker_index

        source, writer = kube_mode(settings, KubeApi(client))
        # With --workers, one process writes status; the others only serve.
        await _run_app(RouterApp(settings, source=source, status_sink=writer if not worker_index() else None))
    finally:
        await client.close()


def kube_mode(settings: Settings, api: KubeApi, *, timings: WatchTimings | None = None,
              lease_timings: LeaseTimings | None = None) -> tuple[KubeSource, StatusWriter]:
    """The config source and status sink of Kubernetes mode, from the settings."""
    from kthena_router.sources.kube import KubeSource
    from kthena_router.sources.leader import LeaderElector, default_identity
    from kthena_router.sources.status import StatusWriter

    source = KubeSource(api, watch_namespace=settings.watch_namespace,
                        enable_gateway_api=settings.enable_gateway_api,
                        enable_inference_extension=settings.enable_inference_extension, timings=timings)
    elector = LeaderElector(api, namespace=settings.namespace, name=settings.leader_election_id,
                            identity=default_identity(settings.pod_name),
                            timings=lease_timings) if settings.leader_elect else None
    writer = StatusWriter(api, namespace=settings.namespace, port=settings.port, qps=settings.kube_api_qps,
                          burst=settings.kube_api_burst, elector=elector, pool_api_version=source.pool_api_version)
    return source, writer


async def _run_app(app: RouterApp) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    from kthena_router.auth import AuthConfigError

    try:
        await app.run()
    except (OSError, AuthConfigError) as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(1) from None

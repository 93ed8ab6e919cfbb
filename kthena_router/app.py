"""Assembles the router: listeners, config source, reconcile loop, metrics and debug servers, drain.

Lifecycle (`RouterApp.run`): start side servers and the `--port` listener, load the configuration,
reconcile it into a Snapshot and open the listeners it needs, then keep applying changes until a stop is
requested; then drain: `/readyz` turns 503, the sockets stop accepting, in-flight requests finish up to
`--drain-timeout`, and everything is closed in reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import random
import ssl
import time
from typing import Any, Protocol

from kthena_router import __version__
from kthena_router.accesslog import AccessLog
from kthena_router.admin import start_debug_server, start_metrics_server
from kthena_router.auth import Authenticator
from kthena_router.endpoints.outlier import OutlierDetector
from kthena_router.endpoints.scraper import Scraper
from kthena_router.endpoints.state import EndpointStates
from kthena_router.http import ServerLimits
from kthena_router.listeners import ListenerManager
from kthena_router.metrics import RouterMetrics
from kthena_router.proxy import Proxy
from kthena_router.reconcile import ReconcileResult, reconcile
from kthena_router.reconcile.status import Statuses
from kthena_router.resources import ReconcileOptions, Resources
from kthena_router.scheduling.admission import Admission
from kthena_router.scheduling.config import load_scheduler_config
from kthena_router.scheduling.saturation import Thresholds
from kthena_router.scheduling.scheduler import PoolSchedulers
from kthena_router.settings import Settings
from kthena_router.snapshot import Snapshot
from kthena_router.sources import ConfigSource
from kthena_router.sources.files import FileSource
from kthena_router.state import RouterState
from kthena_router.tasks import TaskGroup
from kthena_router.upstream import UpstreamClient

log = logging.getLogger(__name__)


def reconcile_options(settings: Settings, unavailable_ports: frozenset[int] = frozenset()) -> ReconcileOptions:
    return ReconcileOptions(
        default_port=settings.port,
        router_namespace=settings.namespace,
        enable_gateway_api=settings.enable_gateway_api,
        enable_inference_extension=settings.enable_inference_extension,
        unavailable_ports=unavailable_ports,
        # Kubernetes mode watches Services, so an endpointPickerRef to a missing one can be reported.
        check_extension_refs=settings.config_dir is None,
    )


def describe_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "ports": {
            str(port): [
                {"gateway": str(lr.gateway), "listener": lr.listener, "hostname": lr.hostname,
                 "routes": lr.table.describe()}
                for lr in (*table.exact.values(), *(lr for _, lr in table.wildcard),
                           *((table.catch_all,) if table.catch_all else ()))
            ]
            for port, table in sorted(snapshot.ports.items())
        },
        "pools": {
            str(ref): {"endpoints": [{"address": e.address, "pod": str(e.pod), "engine": e.engine}
                                     for e in pool.endpoints],
                       "unusable_reason": pool.unusable_reason}
            for ref, pool in sorted(snapshot.pools.items())
        },
        "objectives": {str(ref): {"pool": pool, "priority": priority}
                       for ref, (pool, priority) in sorted(snapshot.objectives.items())},
    }


class StatusSink(Protocol):
    """Receives every reconcile's statuses (the Kubernetes status writer; nothing in file mode).

    `publish` must not block: the sink queues and writes on its own tasks, started by `start` and stopped by
    `close`."""

    async def start(self) -> None: ...

    def publish(self, statuses: Statuses) -> None: ...

    async def close(self) -> None: ...


class RouterApp:
    def __init__(self, settings: Settings, *, source: ConfigSource | None = None,
                 status_sink: StatusSink | None = None) -> None:
        self.settings = settings
        self.state = RouterState()
        self.metrics = RouterMetrics()
        self.access_log = AccessLog(enabled=settings.access_log, fmt=settings.access_log_format,
                                    output=settings.access_log_output)
        self.tasks = TaskGroup()
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()  # a second stop request: finish the drain now
        self._changed = asyncio.Event()
        self._latest: Resources | None = None
        self._version = 0
        self._source: ConfigSource | None = source
        self._status_sink = status_sink
        self.upstream: UpstreamClient | None = None
        self._listeners: ListenerManager | None = None
        self._side_runners: list[Any] = []
        self._simulators: dict[tuple[str, int], Any] = {}
        self._labelled_endpoints: set[tuple[str, str]] = set()  # (address, pool) pairs metrics may label
        self.proxy: Proxy | None = None
        # Scheduling: a bad --scheduler-config fails here, before anything is started (ConfigError).
        self.endpoint_states = EndpointStates(stale_after=settings.metrics_stale_after)
        self.scheduler = PoolSchedulers(load_scheduler_config(settings.scheduler_config), self.endpoint_states,
                                        self.state.inflight, timer=self.metrics)
        self.admission = Admission(
            self.endpoint_states,
            thresholds=Thresholds(settings.saturation_queue_threshold, settings.saturation_kv_threshold),
            max_queued=settings.max_queued_requests, timeout=settings.queue_timeout, observer=self.metrics)
        self.outliers = OutlierDetector(
            settings.outlier_consecutive_failures, settings.outlier_base_ejection,
            settings.outlier_max_ejection_percent,
            on_change=lambda key, ejected: self.metrics.endpoint_ejected(_address(key), ejected))
        self.metrics.refreshers.append(self.outliers.expire)
        self.auth = Authenticator.from_settings(settings)  # a bad --api-keys-file fails here
        self.scraper = Scraper(self.endpoint_states, interval=settings.scrape_interval,
                               max_rate=settings.max_scrapes_per_second,
                               on_update=self.admission.poll, read_latency=self.scheduler.reads_latency)
        self.state.inflight.on_busy = self.scraper.wake  # an idle endpoint given work is scraped at once

    # --- lifecycle ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful drain; a second request skips what is left of the waiting."""
        if self._stop.is_set() and not self._hurry.is_set():
            log.warning("second stop request: closing without waiting for requests in flight")
            self._hurry.set()
        self._stop.set()

    async def run(self) -> None:
        # The first load may wait long (an API server that is down): `--port` already answers /readyz
        # with 503 meanwhile, and a stop request during it still shuts down.
        starting = asyncio.create_task(self.start(), name="start")
        stopping = asyncio.create_task(self._stop.wait(), name="stop-requested")
        try:
            await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                await stopping
            else:
                log.info("stop requested before the configuration was loaded")
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
        finally:
            stopping.cancel()
            await self.shutdown()

    async def start(self) -> None:
        settings = self.settings
        await self.access_log.start()
        if self.auth is not None:
            await self.auth.start()
        self.upstream = UpstreamClient(connect_timeout=settings.connect_timeout,
                                       read_timeout=settings.upstream_read_timeout,
                                       keepalive_per_host=settings.upstream_keepalive_connections,
                                       idle_timeout=UPSTREAM_IDLE_TIMEOUT)
        self.proxy = Proxy(state=self.state, settings=settings, metrics=self.metrics,
                           access_log=self.access_log, picker=self.scheduler, upstream=self.upstream,
                           rng=random.Random(), admission=self.admission, outliers=self.outliers,
                           auth=self.auth)
        self._listeners = ListenerManager(self.proxy.handle, host=settings.host, main_port=settings.port,
                                          limits=server_limits(settings), ssl_context=_ssl_context(settings),
                                          reuse_port=settings.workers > 1)
        await self._listeners.sync(frozenset())
        if self._status_sink is not None:
            await self._status_sink.start()
        if settings.metrics_port:
            self._side_runners.append(await start_metrics_server(self.metrics, settings.host,
                                                                 settings.metrics_port))
        if settings.debug_port:
            self._side_runners.append(await start_debug_server(self.debug_dump, settings.debug_port))
        if self._source is None and settings.config_dir is not None:
            self._source = FileSource(settings.config_dir, enable_gateway_api=settings.enable_gateway_api,
                                      enable_inference_extension=settings.enable_inference_extension,
                                      interval=settings.reload_interval)
        if self._source is not None:
            await self.apply(await self._source.load())
            self.tasks.spawn(self._source.watch(self._on_change), "config-watch")
        else:
            await self.apply(Resources())
        self.tasks.spawn(self._apply_loop(), "config-apply")
        self.state.config_loaded = True
        self.state.listeners_up = True
        log.info("kthena-router %s ready on port %d", __version__, settings.port)

    async def shutdown(self) -> None:
        state = self.state
        state.draining = True  # /readyz fails from now on
        settings = self.settings
        if settings.drain_delay > 0 and self._listeners is not None and not self._hurry.is_set():
            log.info("draining: /readyz fails; still accepting connections for %gs", settings.drain_delay)
            await self._wait_or_hurry(self._hurry.wait(), settings.drain_delay)
        log.info("draining: no longer accepting; %d requests in flight", state.active_requests)
        if self._listeners is not None:
            await self._listeners.stop_accepting()
        if not await self._wait_or_hurry(state.wait_idle(), settings.drain_timeout) and state.active_requests:
            log.warning("drain ended after %gs or a second stop request; closing %d requests still in flight",
                        settings.drain_timeout, state.active_requests)
        await self.tasks.close()
        await self.scraper.close()
        if self._status_sink is not None:
            await self._status_sink.close()
        if self._listeners is not None:
            await self._listeners.close()
        for runner in self._side_runners:
            await runner.cleanup()
        for sim in self._simulators.values():
            await sim.close()
        if self.upstream is not None:
            await self.upstream.close()
        if self.auth is not None:
            await self.auth.close()
        await self.access_log.close()

    # --- configuration ------------------------------------------------------------------------------

    async def _on_change(self, resources: Resources) -> None:
        self._latest = resources
        self._changed.set()

    async def _apply_loop(self) -> None:
        """Apply the newest resources; changes that arrive during an apply coalesce into the next one."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            resources, self._latest = self._latest, None
            if resources is not None:
                await self.apply(resources)

    async def apply(self, resources: Resources) -> ReconcileResult:
        """Reconcile, open/close listeners, publish the Snapshot. Re-reconciles once if a port fails to bind."""
        assert self._listeners is not None
        unavailable = self._listeners.unavailable
        result = await asyncio.to_thread(reconcile, resources, reconcile_options(self.settings, unavailable))
        # While draining the sockets stay as they are: a Gateway added now must not open a port that accepts.
        failed = unavailable if self.state.draining else await self._listeners.sync(result.ports)
        if failed != unavailable:
            result = await asyncio.to_thread(reconcile, resources, reconcile_options(self.settings, failed))
        self._version += 1
        self.scheduler.sync(result.snapshot.pools)  # pools' own schedulers, ready before the swap
        self.scraper.read_latency = self.scheduler.reads_latency
        self.state.snapshot = Snapshot(result.snapshot.ports, result.snapshot.pools, result.snapshot.objectives,
                                       self._version)
        self.state.statuses = result.statuses.to_dict()
        if self._source is not None:
            self.state.config_errors = list(self._source.errors)
        if self._status_sink is not None:
            self._status_sink.publish(result.statuses)
        if self.settings.simulate:
            await self._start_simulators(result.snapshot)
        self._follow_endpoints(result.snapshot)
        return result

    def _follow_endpoints(self, snapshot: Snapshot) -> None:
        """Scrape exactly the endpoints of the new Snapshot's pools; forget what is learned about the rest."""
        endpoints = [e for pool in snapshot.pools.values() for e in pool.endpoints]
        self.scraper.sync(endpoints)
        alive = {e.key for e in endpoints}
        self.scheduler.forget(alive)
        self.outliers.forget(alive)
        if self.upstream is not None:
            self.upstream.forget_except(alive)
        self.admission.update_pools(snapshot.pools)
        labelled = {(e.address, str(ref)) for ref, pool in snapshot.pools.items() for e in pool.endpoints}
        for address, pool_label in self._labelled_endpoints - labelled:
            self.metrics.forget_endpoint(address, pool_label)
            self.metrics.forget_ejections(address)
        self._labelled_endpoints = labelled

    async def _start_simulators(self, snapshot: Snapshot) -> None:
        from kthena_router.sim import SimConfig, start_simulator

        for pool in snapshot.pools.values():
            for endpoint in pool.endpoints:
                key = (endpoint.key.ip, endpoint.key.port)
                if key in self._simulators:
                    continue
                if not ipaddress.ip_address(endpoint.key.ip).is_loopback:
                    log.warning("--simulate: not starting a simulator for %s: only loopback addresses are "
                                "simulated", endpoint.address)
                    self._simulators[key] = _NotSimulated()
                    continue
                try:
                    self._simulators[key] = await start_simulator(
                        SimConfig(model=self.settings.simulate_model), endpoint.key.ip, endpoint.key.port)
                    log.info("--simulate: model server %r on %s for pod %s", self.settings.simulate_model,
                             endpoint.address, endpoint.pod)
                except OSError as exc:
                    log.error("--simulate: cannot start a simulator on %s: %s", endpoint.address, exc)
                    self._simulators[key] = _NotSimulated()

    async def _wait_or_hurry(self, awaitable, limit: float) -> bool:
        """Await `awaitable` for at most `limit` seconds or until a second stop request; True if it finished."""
        waiting = asyncio.ensure_future(awaitable)
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            done, _ = await asyncio.wait((waiting, hurry), timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            return waiting in done
        finally:
            for task in (waiting, hurry):
                task.cancel()
            await asyncio.gather(waiting, hurry, return_exceptions=True)

    def debug_dump(self) -> dict[str, Any]:
        state = self.state
        now = time.monotonic()
        return {
            "snapshot": describe_snapshot(state.snapshot),
            "statuses": state.statuses,
            "config_errors": state.config_errors,
            "listeners": {"ports": sorted(self._listeners.ports) if self._listeners else [],
                          "unavailable": sorted(self._listeners.unavailable) if self._listeners else []},
            "inflight": {f"{k.ip}:{k.port}": n for k, n in state.inflight.counts.items()},
            "scheduler": self.scheduler.describe(),
            "endpoints": {f"{k.ip}:{k.port}": s.describe(now)
                          for k, s in sorted(self.endpoint_states.by_key.items())},
            "ready": state.ready,
            "active_requests": state.active_requests,
            "runtime": self.runtime_stats(),
            "ejected": sorted(_address(k) for k in self.outliers.ejected_keys()),
        }

    def runtime_stats(self) -> dict[str, int]:
        """Counts that must return to their idle values after load: the soak and leak tests read them."""
        listeners = self._listeners
        return {
            "tasks": len(asyncio.all_tasks()),
            "objects": len(gc.get_objects()),  # a leak shows here before RSS, which keeps peaks
            "client_connections": listeners.open_connections if listeners else 0,
            "streams": listeners.streams if listeners else 0,
            "upstream_connections": self.upstream.open_connections if self.upstream else 0,
            "upstream_idle_connections": self.upstream.idle_connections if self.upstream else 0,
            "active_requests": self.state.active_requests,
            "inflight": self.state.inflight.total(),
        }


class _NotSimulated:
    async def close(self) -> None:
        return None


# Idle upstream connections are dropped before vLLM's server (uvicorn, 5 s keep-alive) would close them.
UPSTREAM_IDLE_TIMEOUT = 4.0


def _address(key) -> str:
    return f"[{key.ip}]:{key.port}" if ":" in key.ip else f"{key.ip}:{key.port}"


def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers, header_read_timeout=settings.header_read_timeout,
        body_read_timeout=settings.body_read_timeout, keepalive_timeout=settings.keepalive_timeout,
        max_connections=settings.max_connections, max_streams=settings.max_streams)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context

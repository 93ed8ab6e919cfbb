"""Lease-based leader election (`coordination.k8s.io/v1` Lease): only the holder writes status.

Every replica serves traffic and watches; `LeaderElector.run` tries to acquire the Lease and then renews
it every `retry_period`. A Lease held by another identity is taken over only once it has not changed for
`lease_duration` by this replica's own clock (so clock skew between nodes does not matter). Every write
carries the resourceVersion it read, so two candidates never both win: the loser gets 409 and looks again.
A leader that cannot renew within `renew_deadline` steps down. `release()` (on shutdown) empties the
holder so another replica takes over at once. Nothing here writes anything but the Lease.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kthena_router.sources.kube import LEASES, KubeApi, KubeApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time(moment: datetime | None = None) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity(pod_name: str) -> str:
    return pod_name or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    def __init__(self, api: KubeApi, *, namespace: str, name: str, identity: str,
                 timings: LeaseTimings | None = None,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings or LeaseTimings()
        self._on_change = on_change
        self.is_leader = False
        self._observed: tuple[Any, float] | None = None  # (holder spec as last seen, loop time seen)
        self._last_renew = 0.0

    async def run(self) -> None:
        """Acquire, then renew, forever."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                ok = await self._try_acquire_or_renew()
            except (KubeApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("leader election: lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            now = loop.time()
            if ok:
                self._last_renew = now
                self._set(True)
            elif self.is_leader and now - self._last_renew > self.timings.renew_deadline:
                log.warning("leader election: could not renew lease %s/%s for %gs; stepping down",
                            self.namespace, self.name, self.timings.renew_deadline)
                self._set(False)
            await asyncio.sleep(self.timings.retry_period)

    async def release(self) -> None:
        """Give the Lease up (shutdown), so another replica need not wait for it to expire."""
        if not self.is_leader:
            return
        self._set(False)
        try:
            lease = await self.api.request("GET", LEASES.path(self.namespace, self.name))
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time()
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now,
                             "acquireTime": now}
            await self.api.request("PUT", LEASES.path(self.namespace, self.name), body=lease)
            log.info("leader election: released lease %s/%s", self.namespace, self.name)
        except (KubeApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, exc)

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        log.info("leader election: %s %s lease %s/%s", self.identity, "holds" if leader else "lost",
                 self.namespace, self.name)
        if self._on_change is not None:
            self._on_change(leader)

    async def _try_acquire_or_renew(self) -> bool:
        path = LEASES.path(self.namespace, self.name)
        now = micro_time()
        duration = max(1, round(self.timings.lease_duration))
        try:
            lease = await self.api.request("GET", path)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            try:
                await self.api.request("POST", LEASES.path(self.namespace), body=body)
            except KubeApiError as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        loop_now = asyncio.get_running_loop().time()
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, loop_now)
        if holder and holder != self.identity:
            held_for = int(spec.get("leaseDurationSeconds") or duration)
            if loop_now - self._observed[1] < held_for:
                return False  # someone else holds a live lease
        if holder != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=duration, renewTime=now)
        lease["spec"] = spec
        try:
            await self.api.request("PUT", path, body=lease)
        except KubeApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

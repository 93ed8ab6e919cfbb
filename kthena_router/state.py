"""Shared router state passed to every part: the current Snapshot, readiness, drain and request counts."""

from __future__ import annotations

import asyncio
from typing import Any

from kthena_router.scheduling.picker import InFlight
from kthena_router.snapshot import EMPTY_SNAPSHOT, Snapshot


class RouterState:
    """One per process. The request path reads `snapshot` once per request; sources replace it whole."""

    def __init__(self) -> None:
        self.snapshot: Snapshot = EMPTY_SNAPSHOT
        self.config_loaded = False
        self.listeners_up = False
        self.draining = False
        self.inflight = InFlight()
        self.active_requests = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # For the debug dump and the status command: the last reconcile's statuses and its inputs' summary.
        self.statuses: dict[str, Any] = {}
        self.config_errors: list[str] = []

    @property
    def ready(self) -> bool:
        return self.config_loaded and self.listeners_up and not self.draining

    def request_started(self) -> None:
        self.active_requests += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.active_requests -= 1
        if self.active_requests == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

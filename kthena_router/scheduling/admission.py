"""Admission before dispatch: shed sheddable requests and queue the rest while a pool is saturated.

`Admission.admit(pool, priority)` returns at once while the pool is not saturated and nobody waits for it
(the common case: one dict lookup and one pass over the endpoints' states). Otherwise:
- a request with priority < 0 on a saturated pool is rejected (`Overloaded`, 429);
- a full queue rejects too (`Overloaded`, 429; `--max-queued-requests` per pool);
- everyone else waits in the pool's queue, strict priority between levels, FIFO within one, until
  `release` lets it go or `--queue-timeout` passes (`QueueTimeout`, 503). A client that disconnects
  while waiting is cancelled and its place is freed at once.

`poll()` is called after every good scrape and Snapshot change: for each pool with waiters it releases
as many as the pool's headroom allows (room under the saturation thresholds, minus the requests released
since the scrapes that estimate rests on), highest priority first. Nothing here awaits except the waiter.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from kthena_router import errors
from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.state import EndpointStates
from kthena_router.scheduling.saturation import Thresholds, headroom, saturated
from kthena_router.snapshot import Pool


class QueueObserver(Protocol):
    def queue_size(self, pool: str, size: int) -> None: ...
    def queue_wait(self, pool: str, seconds: float, outcome: str) -> None: ...
    def shed(self, pool: str, reason: str) -> None: ...


class _Waiter:
    __slots__ = ("priority", "seq", "future", "waiting")

    def __init__(self, priority: int, seq: int, future: asyncio.Future[None]) -> None:
        self.priority = priority
        self.seq = seq
        self.future = future
        self.waiting = True  # False once released, timed out or cancelled

    def __lt__(self, other: _Waiter) -> bool:
        if self.priority != other.priority:
            return self.priority > other.priority
        return self.seq < other.seq


class _PoolQueue:
    __slots__ = ("pool", "heap", "waiting", "released")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.heap: list[_Waiter] = []
        self.waiting = 0  # live waiters (the heap may also hold cancelled ones until they surface)
        self.released: deque[float] = deque()  # monotonic times of recent releases


class Admission:
    def __init__(self, states: EndpointStates, *, thresholds: Thresholds, max_queued: int = 1000,
                 timeout: float = 30.0, observer: QueueObserver | None = None) -> None:
        if max_queued < 0:
            raise ValueError(f"max queued requests must be >= 0, got {max_queued}")
        if timeout <= 0:
            raise ValueError(f"queue timeout must be > 0, got {timeout}")
        self.states = states
        self.thresholds = thresholds
        self.max_queued = max_queued
        self.timeout = timeout
        self.observer = observer
        self._queues: dict[ObjectRef, _PoolQueue] = {}
        self._seq = itertools.count()

    def saturated(self, pool: Pool, now: float | None = None) -> bool:
        return saturated(pool.endpoints, self.states, time.monotonic() if now is None else now,
                         self.thresholds)

    def queued(self, pool: ObjectRef) -> int:
        queue = self._queues.get(pool)
        return queue.waiting if queue is not None else 0

    async def admit(self, pool: Pool, priority: int) -> None:
        """Return when `pool` may take this request; raise Overloaded or QueueTimeout otherwise."""
        queue = self._queues.get(pool.ref)
        now = time.monotonic()
        if (queue is None or queue.waiting == 0) and not self.saturated(pool, now):
            return
        name = str(pool.ref)
        if priority < 0 and self.saturated(pool, now):
            self._shed(name, "saturated")
            raise errors.Overloaded(f"InferencePool {pool.ref} is saturated; request of priority {priority} "
                                    "dropped")
        if queue is None:
            queue = self._queues[pool.ref] = _PoolQueue(pool)
        queue.pool = pool
        if queue.waiting >= self.max_queued:
            self._shed(name, "queue_full")
            raise errors.Overloaded(f"InferencePool {pool.ref} is saturated and its queue of "
                                    f"{self.max_queued} requests is full")
        waiter = _Waiter(priority, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(queue.heap, waiter)
        queue.waiting += 1
        self._size(name, queue)
        self._release(queue, now)  # a request may be admissible at once (queued only behind others)
        outcome = "cancelled"
        try:
            async with asyncio.timeout(self.timeout):
                await waiter.future
            outcome = "dispatched"
        except TimeoutError:
            outcome = "timeout"
            self._shed(name, "queue_timeout")
            raise errors.QueueTimeout(f"request waited {self.timeout:g}s in the queue of saturated "
                                      f"InferencePool {pool.ref}") from None
        finally:
            if waiter.waiting:  # timed out or cancelled (the client went away): free the place now
                waiter.waiting = False
                if not waiter.future.done():
                    waiter.future.cancel()
                queue.waiting -= 1
                self._size(name, queue)
                if len(queue.heap) > 2 * queue.waiting + 64:  # drop the dead entries of a long wait
                    queue.heap = [w for w in queue.heap if w.waiting]
                    heapq.heapify(queue.heap)
            if self.observer is not None:
                self.observer.queue_wait(name, time.monotonic() - now, outcome)

    def poll(self) -> None:
        """Release waiters of every pool that has room now."""
        if not self._queues:
            return
        now = time.monotonic()
        for queue in list(self._queues.values()):
            if queue.waiting:
                self._release(queue, now)

    def update_pools(self, pools: Mapping[ObjectRef, Pool]) -> None:
        """Follow a new Snapshot: queues of removed pools fail with NoEndpoints; the rest see new endpoints."""
        for ref, queue in list(self._queues.items()):
            pool = pools.get(ref)
            if pool is None or not pool.endpoints:
                del self._queues[ref]
                for waiter in queue.heap:
                    if waiter.waiting:
                        waiter.waiting = False
                        if not waiter.future.done():
                            waiter.future.set_exception(errors.NoEndpoints(
                                f"InferencePool {ref} has no ready endpoints"))
                queue.heap.clear()
                queue.waiting = 0
                self._size(str(ref), queue)
            else:
                queue.pool = pool
        self.poll()

    def _release(self, queue: _PoolQueue, now: float) -> None:
        room, oldest = headroom(queue.pool.endpoints, self.states, now, self.thresholds)
        released = queue.released
        while released and released[0] < oldest:
            released.popleft()
        room -= len(released)
        heap = queue.heap
        freed = 0
        while room > 0 and heap:
            waiter = heapq.heappop(heap)
            if not waiter.waiting:  # cancelled or timed out: its place was already returned
                continue
            if waiter.future.done():
                # Its task was cancelled (timeout or client gone) and has not run its cleanup yet; that
                # cleanup returns the place.
                continue
            waiter.waiting = False
            waiter.future.set_result(None)
            queue.waiting -= 1
            released.append(now)
            room -= 1
            freed += 1
        if freed:
            self._size(str(queue.pool.ref), queue)
        if not heap and not queue.waiting:
            self._queues.pop(queue.pool.ref, None)

    def _size(self, name: str, queue: _PoolQueue) -> None:
        if self.observer is not None:
            self.observer.queue_size(name, queue.waiting)

    def _shed(self, name: str, reason: str) -> None:
        if self.observer is not None:
            self.observer.shed(name, reason)


def priority_of(objectives: Mapping[ObjectRef, tuple[str, int]], pool: Pool, name: str | None) -> int:
    """The priority of the InferenceObjective `name` in the pool's namespace; 0 when missing, unknown, or
    bound to another pool."""
    if not name:
        return 0
    found = objectives.get(ObjectRef(pool.ref.namespace, name))
    if found is None or found[0] != pool.ref.name:
        return 0
    return found[1]

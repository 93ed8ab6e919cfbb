"""The simulator's scheduler: a fixed number of generation slots, a FIFO queue, and paced tokens.

The HTTP layer (`server.py`) turns each request into a `Sequence` and iterates `Engine.generate`, which
waits for a slot, sleeps the time to first token, then yields one token index per inter-token interval.
At most `max_num_seqs` sequences run at once; the rest wait in arrival order and are woken one by one as
slots free (a future per waiter, no polling). Everything the metrics report — running and waiting counts,
KV-cache usage, running and waiting LoRA adapters — is kept up to date here as plain counters.

Bookkeeping must survive cancellation: a client that disconnects cancels its handler, and whatever the
sequence held (a queue place or a slot) is given back in `finally`. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from kthena_router.sim.config import SimConfig
from kthena_router.sim.metrics import SimMetrics

log = logging.getLogger(__name__)

# Token budget of the simulated KV cache: usage is the tokens held by running sequences (prompt plus
# generated so far) over this number, clamped to 1.
KV_CAPACITY_TOKENS = 65_536

FinishReason = Literal["length", "stop"]


@dataclass(slots=True, eq=False)
class Sequence:
    """One request's progress through the engine. Compared and hashed by identity."""

    prompt_tokens: int
    max_tokens: int
    lora: str | None = None
    finish_reason: FinishReason = "length"
    generated: int = 0
    # Set by the engine: loop time of arrival, of the first token and of the latest token.
    arrived_at: float = 0.0
    first_token_at: float = 0.0
    last_token_at: float = 0.0


class Engine:
    """Slots, queue and pacing for one simulated model server."""

    __slots__ = (
        "_max_num_seqs",
        "_ttft",
        "_itl",
        "_metrics",
        "_running",
        "_waiting",
        "_running_loras",
        "_waiting_loras",
        "_tokens_held",
        "_changed_at",
    )

    def __init__(self, config: SimConfig, metrics: SimMetrics) -> None:
        self._max_num_seqs = config.max_num_seqs
        self._ttft = config.ttft_ms / 1000.0
        self._itl = config.itl_ms / 1000.0
        self._metrics = metrics
        self._running = 0
        # Waiters in arrival order; OrderedDict gives O(1) removal from the middle and from the front.
        self._waiting: OrderedDict[Sequence, asyncio.Future[None]] = OrderedDict()
        self._running_loras: dict[str, int] = {}
        self._waiting_loras: dict[str, int] = {}
        self._tokens_held = 0
        self._changed_at = time.time()

    # -- what the metrics read ---------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        return self._running

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self._tokens_held / KV_CAPACITY_TOKENS)

    @property
    def running_loras(self) -> tuple[str, ...]:
        """Adapters with at least one running sequence, in the order they became active."""
        return tuple(self._running_loras)

    @property
    def waiting_loras(self) -> tuple[str, ...]:
        """Adapters with at least one waiting sequence, in the order they started waiting."""
        return tuple(self._waiting_loras)

    @property
    def changed_at(self) -> float:
        """Wall-clock time of the latest admission, start or release."""
        return self._changed_at

    # -- generation --------------------------------------------------------------------------------

    async def generate(self, seq: Sequence) -> AsyncIterator[int]:
        """Yield token indices 0..max_tokens-1 at the configured pace, holding a slot meanwhile.

        Consume it inside `contextlib.aclosing` so that the slot is released as soon as the consumer
        stops, whether it finished, failed or was cancelled.
        """
        loop = asyncio.get_running_loop()
        seq.arrived_at = loop.time()
        await self._acquire(seq)
        try:
            started = loop.time()
            if self._ttft > 0:
                await asyncio.sleep(self._ttft)
            metrics = self._metrics
            for index in range(seq.max_tokens):
                if index and self._itl > 0:
                    # Pace against absolute deadlines so a slow consumer does not stretch the schedule.
                    delay = started + self._ttft + index * self._itl - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                now = loop.time()
                if index == 0:
                    seq.first_token_at = now
                    metrics.observe_first_token(now - seq.arrived_at, seq.prompt_tokens)
                else:
                    metrics.observe_token_gap(now - seq.last_token_at)
                seq.last_token_at = now
                seq.generated += 1
                self._tokens_held += 1
                yield index
            metrics.observe_finished(loop.time() - seq.arrived_at, seq.finish_reason)
        finally:
            self._release(seq)

    async def _acquire(self, seq: Sequence) -> None:
        if self._running < self._max_num_seqs and not self._waiting:
            self._start(seq)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = fut
        _incr(self._waiting_loras, seq.lora)
        self._changed_at = time.time()
        granted = False
        try:
            await fut
            granted = True
        finally:
            if not granted:
                self._abandon(seq, fut)

    def _abandon(self, seq: Sequence, fut: asyncio.Future[None]) -> None:
        """Undo a wait that ended without the sequence taking its slot (it was cancelled)."""
        if self._waiting.pop(seq, None) is not None:
            _decr(self._waiting_loras, seq.lora)
            self._changed_at = time.time()
        elif fut.done() and not fut.cancelled():
            # The slot was handed over, but the task was cancelled before it resumed: pass it on.
            self._release(seq)
        # Otherwise `_release` already dropped this cancelled waiter from the queue.

    def _start(self, seq: Sequence) -> None:
        self._running += 1
        self._tokens_held += seq.prompt_tokens
        _incr(self._running_loras, seq.lora)
        self._changed_at = time.time()

    def _release(self, seq: Sequence) -> None:
        self._running -= 1
        self._tokens_held -= seq.prompt_tokens + seq.generated
        _decr(self._running_loras, seq.lora)
        # Hand the slot to the oldest waiter still waiting; cancelled waiters are dropped on the way.
        # No await may come between popping a waiter and starting it.
        while self._waiting:
            nxt, fut = self._waiting.popitem(last=False)
            _decr(self._waiting_loras, nxt.lora)
            if not fut.done():
                self._start(nxt)
                fut.set_result(None)
                break
        self._changed_at = time.time()


def _incr(counts: dict[str, int], key: str | None) -> None:
    if key is not None:
        counts[key] = counts.get(key, 0) + 1


def _decr(counts: dict[str, int], key: str | None) -> None:
    if key is None:
        return
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]

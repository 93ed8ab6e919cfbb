"""The simulator's scheduler: continuous batching stepped by one engine task, with a KV cache and LoRA slots.

The HTTP layer (`server.py`) turns each request into a `Sequence` and iterates `Engine.generate`, which
queues it and yields token indices as the engine produces them. Like vLLM, at most `max_num_seqs`
sequences run at once and the rest wait in arrival order. One engine task steps the running batch: a
step prefills the sequences admitted since the last step (their first token comes out at its end) and
decodes one more token for every other running sequence; its duration follows the cost model documented
on `SimConfig` (uncached prompt tokens, batch size, adapter loads, all over `speed`). A sequence is
admitted when a slot is free, its adapter can have a LoRA slot (`max_loras`; a waiting request whose
adapter cannot is passed over, as vLLM does) and its blocks fit in the KV cache (`kvcache.py`; the first
request that does not fit stops admission). The task exits when nothing runs and starts again on the next
arrival.

Everything the metrics report — running and waiting counts, KV-cache usage, running and waiting LoRA
adapters, prefix-cache queries and hits — is kept here as plain counters, updated as it changes.
Bookkeeping must survive cancellation: a client that disconnects cancels its handler, and whatever the
sequence held (a queue place, a slot, KV blocks) is given back in `finally`, which also admits whoever
can take its place. Nothing here does I/O; time comes from a `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from kthena_router.sim.clock import Clock, LoopClock
from kthena_router.sim.config import SimConfig
from kthena_router.sim.kvcache import Allocation, BlockCache, block_hashes
from kthena_router.sim.metrics import SimMetrics

log = logging.getLogger(__name__)

# Token budget of the simulated KV cache when `kv_blocks` is unset: usage is the tokens held by running
# sequences (prompt plus generated so far) over this number, clamped to 1.
KV_CAPACITY_TOKENS = 65_536

FinishReason = Literal["length", "stop"]


class State(Enum):
    NEW = "new"
    WAITING = "waiting"
    PREFILL = "prefill"  # admitted; its prompt is computed in the next step
    DECODE = "decode"
    DONE = "done"


def word_token_id(word: str) -> int:
    """The simulator's tokenizer: one token per whitespace-separated word, the same id for the same word."""
    return zlib.crc32(word.encode())


def output_token_id(index: int) -> int:
    """The id of generated token `index`, whose text is `" tok<index>"` (so a client that sends an answer
    back in its next prompt sends these very ids)."""
    return zlib.crc32(b"tok%d" % index)


@dataclass(slots=True, eq=False)
class Sequence:
    """One request's progress through the engine. Compared and hashed by identity.

    `token_ids` (the prompt's, when known) name its KV blocks for prefix caching; without them the
    prompt is `prompt_tokens` tokens that share nothing.
    """

    prompt_tokens: int
    max_tokens: int
    lora: str | None = None
    finish_reason: FinishReason = "length"
    token_ids: tuple[int, ...] = ()
    generated: int = 0  # tokens the engine has produced so far
    cached_tokens: int = 0  # prompt tokens found in the prefix cache at admission
    # Set by the engine (clock time): arrival, first token and latest token.
    arrived_at: float = 0.0
    first_token_at: float = 0.0
    last_token_at: float = 0.0
    state: State = State.NEW
    _waker: asyncio.Future[None] | None = field(default=None, repr=False)
    _alloc: Allocation | None = field(default=None, repr=False)
    _prompt_hashes: list[int] = field(default_factory=list, repr=False)


class LoraSlots:
    """Which adapters are loaded, least recently used first; an adapter in use is never unloaded."""

    __slots__ = ("size", "_loaded")

    def __init__(self, size: int) -> None:
        self.size = size
        self._loaded: OrderedDict[str, None] = OrderedDict()

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._loaded)

    def can_load(self, name: str, in_use: dict[str, int]) -> bool:
        if name in self._loaded or len(self._loaded) < self.size:
            return True
        return any(loaded not in in_use for loaded in self._loaded)

    def acquire(self, name: str, in_use: dict[str, int]) -> bool:
        """Make `name` loaded (call only when `can_load`); True when it had to be loaded now."""
        loaded = self._loaded
        if name in loaded:
            loaded.move_to_end(name)
            return False
        if len(loaded) >= self.size:
            victim = next(n for n in loaded if n not in in_use)
            del loaded[victim]
        loaded[name] = None
        return True


class Engine:
    """Queue, batch, KV cache and LoRA slots of one simulated model server."""

    __slots__ = (
        "_config",
        "_max_num_seqs",
        "_clock",
        "_metrics",
        "_running",
        "_waiting",
        "_running_loras",
        "_waiting_loras",
        "_tokens_held",
        "_changed_at",
        "_kv",
        "_lora_slots",
        "_pending_loads",
        "_task",
        "_closed",
        "steps",
    )

    def __init__(self, config: SimConfig, metrics: SimMetrics, clock: Clock | None = None) -> None:
        self._config = config
        self._max_num_seqs = config.max_num_seqs
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._metrics = metrics
        # Both in arrival order; dicts give O(1) removal from anywhere.
        self._running: dict[Sequence, None] = {}
        self._waiting: OrderedDict[Sequence, None] = OrderedDict()
        self._running_loras: dict[str, int] = {}
        self._waiting_loras: dict[str, int] = {}
        self._tokens_held = 0
        self._changed_at = time.time()
        self._kv = BlockCache(config.kv_blocks, config.block_size) if config.kv_blocks is not None else None
        self._lora_slots = LoraSlots(config.max_loras) if config.max_loras is not None else None
        self._pending_loads = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.steps = 0  # engine steps taken so far

    # -- what the metrics read ---------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        if self._kv is not None:
            return self._kv.usage
        return min(1.0, self._tokens_held / KV_CAPACITY_TOKENS)

    @property
    def kv_cache(self) -> BlockCache | None:
        return self._kv

    @property
    def running_loras(self) -> tuple[str, ...]:
        """Adapters with at least one running sequence, in the order they became active."""
        return tuple(self._running_loras)

    @property
    def waiting_loras(self) -> tuple[str, ...]:
        """Adapters with at least one waiting sequence, in the order they started waiting."""
        return tuple(self._waiting_loras)

    @property
    def loaded_loras(self) -> tuple[str, ...]:
        """Adapters in a LoRA slot, least recently used first (every adapter when slots are unbounded)."""
        return self._lora_slots.loaded if self._lora_slots is not None else self._config.loras

    @property
    def changed_at(self) -> float:
        """Wall-clock time of the latest admission, start or release."""
        return self._changed_at

    # -- generation --------------------------------------------------------------------------------

    async def generate(self, seq: Sequence) -> AsyncIterator[int]:
        """Yield token indices 0..max_tokens-1 as the engine produces them.

        Consume it inside `contextlib.aclosing` so that the sequence leaves the engine as soon as the
        consumer stops, whether it finished, failed or was cancelled.
        """
        if self._closed:
            raise RuntimeError("the engine is closed")
        loop = asyncio.get_running_loop()
        seq.arrived_at = self._clock.now()
        self._enqueue(seq)
        try:
            sent = 0
            while sent < seq.max_tokens:
                if sent < seq.generated:
                    yield sent
                    sent += 1
                    continue
                fut: asyncio.Future[None] = loop.create_future()
                seq._waker = fut
                await fut
        finally:
            self._leave(seq)

    async def close(self) -> None:
        """Stop the engine task; sequences still running are left to their consumers' cancellation."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- queue and admission -----------------------------------------------------------------------

    def _enqueue(self, seq: Sequence) -> None:
        seq.state = State.WAITING
        self._waiting[seq] = None
        _incr(self._waiting_loras, seq.lora)
        if self._kv is not None:
            ids = seq.token_ids or ()
            salt = word_token_id(seq.lora) if seq.lora is not None else 0
            seq._prompt_hashes = block_hashes(ids, self._kv.block_size, salt) if ids else []
        self._changed_at = time.time()
        self._admit()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kthena-sim-engine")
            self._task.add_done_callback(self._engine_done)

    def _admit(self) -> None:
        """Start waiting sequences, oldest first, while they fit. No await may happen in here."""
        if not self._waiting or len(self._running) >= self._max_num_seqs:
            return
        started: list[Sequence] = []
        free_slots = self._max_num_seqs - len(self._running)
        slots, kv = self._lora_slots, self._kv
        for seq in self._waiting:
            if len(started) >= free_slots:
                break
            if (
                slots is not None
                and seq.lora is not None
                and not slots.can_load(seq.lora, self._running_loras)
            ):
                continue
            if kv is not None:
                total = -(-(seq.prompt_tokens + seq.max_tokens) // kv.block_size)
                alloc = kv.admit(seq._prompt_hashes, total)
                if alloc is None:
                    break
                seq._alloc = alloc
                # vLLM always computes the last prompt token, so at most prompt_tokens - 1 are reused.
                seq.cached_tokens = min(alloc.cached_blocks * kv.block_size, seq.prompt_tokens - 1)
                self._metrics.observe_prefix_lookup(seq.prompt_tokens, seq.cached_tokens)
            if slots is not None and seq.lora is not None and slots.acquire(seq.lora, self._running_loras):
                self._pending_loads += 1
            started.append(seq)
            _incr(self._running_loras, seq.lora)  # before the next `can_load`: this adapter is in use
        for seq in started:
            del self._waiting[seq]
            _decr(self._waiting_loras, seq.lora)
            self._running[seq] = None
            self._tokens_held += seq.prompt_tokens
            seq.state = State.PREFILL
        if started:
            self._changed_at = time.time()

    def _leave(self, seq: Sequence) -> None:
        """The consumer stopped: give back whatever the sequence still holds."""
        if seq.state is State.WAITING:
            del self._waiting[seq]
            _decr(self._waiting_loras, seq.lora)
            seq.state = State.DONE
            self._changed_at = time.time()
            self._admit()  # a request passed over for its adapter may fit now
        elif seq.state in (State.PREFILL, State.DECODE):
            self._release(seq)
        else:
            return
        task = self._task
        if not self._running and task is not None and task is not asyncio.current_task():
            # Nothing left to step: stop a step that now computes for nobody.
            task.cancel()
            self._task = None

    def _release(self, seq: Sequence) -> None:
        del self._running[seq]
        seq.state = State.DONE
        self._tokens_held -= seq.prompt_tokens + seq.generated
        _decr(self._running_loras, seq.lora)
        kv, alloc = self._kv, seq._alloc
        if kv is not None and alloc is not None:
            ids = seq.token_ids
            if ids and seq.generated:
                full = [*ids, *(output_token_id(i) for i in range(seq.generated))]
                salt = word_token_id(seq.lora) if seq.lora is not None else 0
                kv.release(alloc, block_hashes(full, kv.block_size, salt))
            else:
                kv.release(alloc, seq._prompt_hashes if ids else [])
            seq._alloc = None
        _wake(seq)
        # Hand the freed room to the oldest waiters that fit. No await between the release and this.
        self._admit()
        self._changed_at = time.time()

    # -- the step loop -----------------------------------------------------------------------------

    def _step_seconds(self, prefill: list[Sequence], batch: int, decoding: bool) -> float:
        config = self._config
        ms = 0.0
        if prefill:
            ms += config.ttft_ms + config.prefill_ms_per_token * sum(
                s.prompt_tokens - s.cached_tokens for s in prefill
            )
        if decoding:
            ms += config.itl_ms * (1.0 + config.itl_batch_factor * (batch - 1))
        ms += config.lora_load_ms * self._pending_loads
        self._pending_loads = 0
        return ms / config.speed / 1000.0

    async def _run(self) -> None:
        clock, metrics, kv = self._clock, self._metrics, self._kv
        while self._running:
            prefill = [s for s in self._running if s.state is State.PREFILL]
            decoding = len(prefill) < len(self._running)
            duration = self._step_seconds(prefill, len(self._running), decoding)
            batch = list(self._running)
            prefilling = set(prefill)
            self.steps += 1
            if duration > 0:
                await clock.sleep(duration)
            now = clock.now()
            for seq in batch:
                if seq.state is State.PREFILL and seq in prefilling:
                    seq.state = State.DECODE
                    if kv is not None and seq._alloc is not None:
                        kv.commit_prompt(seq._alloc, seq._prompt_hashes)
                    seq.first_token_at = now
                    metrics.observe_first_token(now - seq.arrived_at, seq.prompt_tokens)
                elif seq.state is State.DECODE:
                    metrics.observe_token_gap(now - seq.last_token_at)
                else:
                    continue  # it left during the step, or was admitted after the step began
                seq.last_token_at = now
                seq.generated += 1
                self._tokens_held += 1
                if seq.generated >= seq.max_tokens:
                    metrics.observe_finished(now - seq.arrived_at, seq.finish_reason)
                    self._release(seq)
                else:
                    _wake(seq)
            if duration <= 0:
                await asyncio.sleep(0)  # a free step still lets the consumers run before the next one

    def _engine_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("simulated engine failed", exc_info=exc)
            for seq in [*self._running, *self._waiting]:
                if seq._waker is not None and not seq._waker.done():
                    seq._waker.set_exception(RuntimeError("the simulated engine failed"))


def _wake(seq: Sequence) -> None:
    fut = seq._waker
    if fut is not None:
        seq._waker = None
        if not fut.done():
            fut.set_result(None)


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

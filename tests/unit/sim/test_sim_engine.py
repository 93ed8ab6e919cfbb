"""The engine's slots, FIFO queue, cancellation bookkeeping, KV usage, LoRA tracking and pacing."""

import asyncio
from contextlib import aclosing

import pytest

from kthena_router.sim.config import SimConfig
from kthena_router.sim.engine import KV_CAPACITY_TOKENS, Engine, Sequence
from kthena_router.sim.metrics import SimMetrics

LONG_MS = 60_000.0  # a time to first token no test ever waits out


def make_engine(**kwargs) -> tuple[Engine, SimMetrics]:
    config = SimConfig(model="m", loras=("a", "b"), **kwargs)
    metrics = SimMetrics(config)
    return Engine(config, metrics), metrics


async def consume(engine: Engine, seq: Sequence, seen: list[int] | None = None) -> None:
    async with aclosing(engine.generate(seq)) as tokens:
        async for index in tokens:
            if seen is not None:
                seen.append(index)


async def settle() -> None:
    """Let every ready task take its next step (each engine step needs at most a couple)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def cancel_all(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_slot_three_requests_one_runs_two_wait_in_order():
    engine, _ = make_engine(max_num_seqs=1, ttft_ms=LONG_MS)
    seqs = [Sequence(prompt_tokens=1, max_tokens=1) for _ in range(3)]
    tasks = [asyncio.create_task(consume(engine, s)) for s in seqs]
    await settle()
    assert (engine.num_running, engine.num_waiting) == (1, 2)
    await cancel_all(*tasks)
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_queued_requests_start_in_arrival_order_as_slots_free():
    engine, _ = make_engine(max_num_seqs=1, ttft_ms=1)
    order: list[str] = []

    async def run(name: str) -> None:
        await consume(engine, Sequence(prompt_tokens=1, max_tokens=2))
        order.append(name)

    tasks = [asyncio.create_task(run(n)) for n in ("first", "second", "third", "fourth")]
    await settle()
    assert (engine.num_running, engine.num_waiting) == (1, 3)
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third", "fourth"]
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_disconnect_while_queued_leaves_the_queue_and_keeps_fifo():
    engine, _ = make_engine(max_num_seqs=1, ttft_ms=LONG_MS)
    running, queued, last = (asyncio.create_task(consume(engine, Sequence(1, 1))) for _ in range(3))
    await settle()
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    assert (engine.num_running, engine.num_waiting) == (1, 1)

    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await settle()
    assert (engine.num_running, engine.num_waiting) == (1, 0)  # `last` took the freed slot
    assert not last.done()
    await cancel_all(last)
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_cancel_after_slot_handed_over_passes_the_slot_on():
    engine, _ = make_engine(max_num_seqs=1, ttft_ms=LONG_MS)
    first, second, third = (asyncio.create_task(consume(engine, Sequence(1, 1))) for _ in range(3))
    await settle()
    first.cancel()
    await asyncio.sleep(0)  # `first` releases: the slot is handed to `second`, which has not resumed yet
    assert (engine.num_running, engine.num_waiting) == (1, 1)
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    await settle()
    assert (engine.num_running, engine.num_waiting) == (1, 0)  # now held by `third`
    await cancel_all(third)
    assert (engine.num_running, engine.num_waiting) == (0, 0)


async def test_kv_usage_counts_prompt_and_generated_tokens_of_running_sequences():
    engine, _ = make_engine(max_num_seqs=1, itl_ms=LONG_MS)
    seen: list[int] = []
    holder = asyncio.create_task(consume(engine, Sequence(prompt_tokens=1000, max_tokens=5), seen))
    waiter = asyncio.create_task(consume(engine, Sequence(prompt_tokens=7000, max_tokens=5)))
    await settle()
    assert seen == [0]  # the first token is out; the second waits a whole inter-token latency
    assert engine.kv_usage == pytest.approx(1001 / KV_CAPACITY_TOKENS)  # the queued prompt holds no KV
    await cancel_all(holder, waiter)
    assert engine.kv_usage == 0.0


async def test_kv_usage_is_clamped_to_one():
    engine, _ = make_engine(ttft_ms=LONG_MS)
    tasks = [asyncio.create_task(consume(engine, Sequence(3000, 1))) for _ in range(30)]
    await settle()
    assert engine.kv_usage == 1.0
    await cancel_all(*tasks)


async def test_lora_adapters_are_tracked_as_running_and_waiting():
    engine, _ = make_engine(max_num_seqs=2, ttft_ms=LONG_MS)
    before = engine.changed_at
    tasks = [
        asyncio.create_task(consume(engine, Sequence(1, 1, lora=lora))) for lora in ("b", None, "a", "b")
    ]
    await settle()
    assert engine.running_loras == ("b",)
    assert engine.waiting_loras == ("a", "b")
    assert engine.changed_at >= before
    await cancel_all(*tasks)
    assert engine.running_loras == () and engine.waiting_loras == ()


async def test_tokens_are_paced_by_ttft_then_itl_and_recorded():
    engine, metrics = make_engine(ttft_ms=30, itl_ms=10)
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    seq = Sequence(prompt_tokens=4, max_tokens=4)
    start = loop.time()
    await consume(engine, seq, seen)
    elapsed = loop.time() - start
    assert seen == [0, 1, 2, 3]
    assert seq.generated == 4
    assert seq.first_token_at - seq.arrived_at >= 0.03
    assert elapsed >= 0.03 + 3 * 0.01
    assert (metrics.ttft.count, metrics.itl.count, metrics.e2e.count) == (1, 3, 1)
    assert metrics.ttft.total >= 0.03
    assert (metrics.prompt_tokens, metrics.generation_tokens) == (4, 4)
    assert metrics.successes == {"length": 1, "stop": 0}


async def test_a_cancelled_stream_counts_its_tokens_but_not_a_success():
    engine, metrics = make_engine(itl_ms=LONG_MS)
    seen: list[int] = []
    task = asyncio.create_task(consume(engine, Sequence(2, 5, finish_reason="stop"), seen))
    await settle()
    await cancel_all(task)
    assert seen == [0]
    assert metrics.generation_tokens == 1
    assert metrics.e2e.count == 0
    assert metrics.successes == {"length": 0, "stop": 0}

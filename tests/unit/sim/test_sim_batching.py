"""The engine's cost model on a virtual clock: prefix reuse, batch size, KV admission, LoRA slots, speed."""

import asyncio
from contextlib import aclosing

import pytest

from kthena_router.sim.clock import VirtualClock
from kthena_router.sim.config import SimConfig
from kthena_router.sim.engine import Engine, Sequence, output_token_id, word_token_id
from kthena_router.sim.metrics import SimMetrics


def make_engine(**kwargs) -> tuple[Engine, SimMetrics, VirtualClock]:
    config = SimConfig(model="m", **kwargs)
    metrics = SimMetrics(config)
    clock = VirtualClock()
    return Engine(config, metrics, clock), metrics, clock


async def consume(engine: Engine, seq: Sequence) -> Sequence:
    async with aclosing(engine.generate(seq)) as tokens:
        async for _ in tokens:
            pass
    return seq


def ttft_ms(seq: Sequence) -> float:
    return round((seq.first_token_at - seq.arrived_at) * 1000, 6)


def mean_itl_ms(seq: Sequence) -> float:
    return round((seq.last_token_at - seq.first_token_at) * 1000 / (seq.generated - 1), 6)


def prompt(*ids: int) -> Sequence:
    return Sequence(prompt_tokens=len(ids), max_tokens=2, token_ids=ids)


async def test_a_lone_request_sees_the_configured_ttft_and_itl():
    engine, _, _ = make_engine(ttft_ms=30, itl_ms=10)
    seq = await consume(engine, Sequence(prompt_tokens=5, max_tokens=4))
    assert (ttft_ms(seq), mean_itl_ms(seq)) == (30.0, 10.0)
    assert engine.steps == 4  # one prefill step, three decode steps


async def test_prefill_cost_grows_with_uncached_prompt_tokens():
    engine, _, _ = make_engine(ttft_ms=10, prefill_ms_per_token=1, kv_blocks=100, block_size=4)
    short = await consume(engine, prompt(*range(100, 108)))
    long = await consume(engine, prompt(*range(200, 240)))
    assert (ttft_ms(short), ttft_ms(long)) == (18.0, 50.0)


async def test_a_shared_prefix_is_served_from_the_cache_and_lowers_ttft():
    engine, metrics, _ = make_engine(ttft_ms=10, prefill_ms_per_token=1, kv_blocks=100, block_size=4)
    first = await consume(engine, prompt(*range(40)))
    second = await consume(engine, prompt(*range(32), *range(900, 908)))
    assert first.cached_tokens == 0 and ttft_ms(first) == 50.0
    assert second.cached_tokens == 32 and ttft_ms(second) == 18.0
    assert (metrics.prefix_queries, metrics.prefix_hits) == (80, 32)


async def test_an_identical_prompt_still_computes_its_last_token():
    engine, _, _ = make_engine(ttft_ms=0, prefill_ms_per_token=1, kv_blocks=100, block_size=4)
    await consume(engine, prompt(*range(16)))
    again = await consume(engine, prompt(*range(16)))
    assert again.cached_tokens == 15 and ttft_ms(again) == 1.0


async def test_the_previous_answer_is_cached_for_the_next_turn_of_a_chat():
    engine, _, _ = make_engine(prefill_ms_per_token=1, kv_blocks=100, block_size=4)
    turn1 = Sequence(prompt_tokens=6, max_tokens=6, token_ids=tuple(range(6)))
    await consume(engine, turn1)
    history = (*range(6), *(output_token_id(i) for i in range(6)), *range(50, 54))
    turn2 = await consume(engine, Sequence(prompt_tokens=16, max_tokens=1, token_ids=history))
    assert turn2.cached_tokens == 12  # all three full blocks of prompt and answer


async def test_blocks_computed_under_another_adapter_are_not_reused():
    engine, _, _ = make_engine(loras=("a", "b"), kv_blocks=100, block_size=4)
    await consume(engine, Sequence(prompt_tokens=16, max_tokens=1, lora="a", token_ids=tuple(range(16))))
    other = await consume(engine, Sequence(16, 1, lora="b", token_ids=tuple(range(16))))
    same = await consume(engine, Sequence(16, 1, lora="a", token_ids=tuple(range(16))))
    assert (other.cached_tokens, same.cached_tokens) == (0, 15)


async def test_without_token_ids_nothing_is_shared():
    engine, metrics, _ = make_engine(prefill_ms_per_token=1, kv_blocks=100, block_size=4)
    await consume(engine, Sequence(prompt_tokens=16, max_tokens=1))
    again = await consume(engine, Sequence(prompt_tokens=16, max_tokens=1))
    assert again.cached_tokens == 0 and metrics.prefix_hits == 0


async def test_cached_prefixes_are_evicted_least_recently_used_first_from_their_tail():
    # 6 blocks: a request of 8 prompt + 2 output tokens holds 3; its 2 full prompt blocks stay cached.
    engine, _, _ = make_engine(kv_blocks=6, block_size=4)
    await consume(engine, prompt(*range(8)))  # A
    await consume(engine, prompt(*range(100, 108)))  # B
    await consume(engine, prompt(*range(8)))  # A again: a hit, and A is now the most recent
    assert engine.kv_cache is not None and engine.kv_cache.cached == 4
    await consume(engine, prompt(*range(200, 208)))  # C needs one more block: B's last block goes
    hit_a = await consume(engine, prompt(*range(8)))
    hit_b = await consume(engine, prompt(*range(100, 108)))
    assert hit_a.cached_tokens == 7
    assert hit_b.cached_tokens == 4  # only B's first block was left


async def test_kv_usage_is_blocks_held_over_capacity_and_admission_waits_for_room():
    engine, _, _ = make_engine(ttft_ms=1, itl_ms=1, kv_blocks=4, block_size=4)
    first = asyncio.create_task(consume(engine, prompt(*range(8))))  # 3 blocks of 4
    second = asyncio.create_task(consume(engine, prompt(*range(50, 58))))  # 3 more do not fit
    for _ in range(3):
        await asyncio.sleep(0)
    assert (engine.num_running, engine.num_waiting) == (1, 1)
    assert engine.kv_usage == 0.75
    await asyncio.gather(first, second)
    assert (engine.num_running, engine.num_waiting) == (0, 0)
    assert engine.kv_usage == 0.0


async def test_each_further_sequence_in_the_batch_lengthens_every_step():
    alone_engine, _, _ = make_engine(itl_ms=10, itl_batch_factor=0.5)
    alone = await consume(alone_engine, Sequence(prompt_tokens=1, max_tokens=5))
    engine, _, _ = make_engine(itl_ms=10, itl_batch_factor=0.5)
    batch = await asyncio.gather(
        *(consume(engine, Sequence(prompt_tokens=1, max_tokens=5)) for _ in range(4))
    )
    assert mean_itl_ms(alone) == 10.0
    assert [mean_itl_ms(s) for s in batch] == [25.0] * 4  # 10 * (1 + 0.5 * 3)


async def test_a_newcomer_is_prefilled_in_the_next_step_alongside_the_decodes():
    engine, _, clock = make_engine(ttft_ms=20, itl_ms=10)
    early = asyncio.create_task(consume(engine, Sequence(prompt_tokens=1, max_tokens=6)))
    while clock.now() < 0.035:  # the prefill step (20 ms) and one decode step (10 ms) are done
        await asyncio.sleep(0)
    late = await consume(engine, Sequence(prompt_tokens=1, max_tokens=1))
    await early
    # The late request arrived as a decode step ended, then shared a step of prefill (20 ms) and decode
    # (10 ms) with the early one.
    assert late.arrived_at == pytest.approx(0.04)
    assert ttft_ms(late) == pytest.approx(30.0)


async def test_speed_divides_every_step():
    engine, _, _ = make_engine(ttft_ms=30, itl_ms=10, speed=2.0)
    seq = await consume(engine, Sequence(prompt_tokens=1, max_tokens=3))
    assert (ttft_ms(seq), mean_itl_ms(seq)) == (15.0, 5.0)


async def test_loading_an_adapter_costs_time_once_while_it_stays_in_its_slot():
    engine, _, _ = make_engine(loras=("a", "b"), max_loras=1, lora_load_ms=100, ttft_ms=10)
    cold = await consume(engine, Sequence(prompt_tokens=1, max_tokens=1, lora="a"))
    warm = await consume(engine, Sequence(prompt_tokens=1, max_tokens=1, lora="a"))
    base = await consume(engine, Sequence(prompt_tokens=1, max_tokens=1))
    assert (ttft_ms(cold), ttft_ms(warm), ttft_ms(base)) == (110.0, 10.0, 10.0)
    assert engine.loaded_loras == ("a",)


async def test_a_full_slot_evicts_the_least_recently_used_idle_adapter():
    engine, _, _ = make_engine(loras=("a", "b", "c"), max_loras=2, lora_load_ms=100)
    for lora in ("a", "b", "a", "c"):
        await consume(engine, Sequence(prompt_tokens=1, max_tokens=1, lora=lora))
    assert engine.loaded_loras == ("a", "c")  # b was the least recently used


async def test_a_request_whose_adapter_cannot_get_a_slot_waits_and_others_pass_it():
    engine, _, _ = make_engine(loras=("a", "b"), max_loras=1, ttft_ms=1, itl_ms=1)
    holder = asyncio.create_task(consume(engine, Sequence(prompt_tokens=1, max_tokens=50, lora="a")))
    await asyncio.sleep(0)
    blocked = asyncio.create_task(consume(engine, Sequence(prompt_tokens=1, max_tokens=1, lora="b")))
    passer = asyncio.create_task(consume(engine, Sequence(prompt_tokens=1, max_tokens=50)))
    for _ in range(3):
        await asyncio.sleep(0)
    assert engine.running_loras == ("a",) and engine.waiting_loras == ("b",)
    assert engine.num_running == 2  # the base-model request went ahead of `b`
    await asyncio.gather(holder, blocked, passer)
    assert engine.loaded_loras == ("b",)


async def test_words_map_to_the_same_token_ids_everywhere():
    assert word_token_id("system") == word_token_id("system") != word_token_id("user")
    assert output_token_id(3) == word_token_id("tok3")

import random
from collections import Counter

import pytest

from kthena_router import errors
from kthena_router.scheduling.config import DEFAULT_SCHEDULER, SchedulerConfig
from kthena_router.scheduling.picker import PickRequest
from kthena_router.scheduling.pickers import MaxScorePicker, WeightedRandomPicker
from kthena_router.scheduling.scheduler import Scheduler, _Stage

from .conftest import World


def scheduler(world, config: SchedulerConfig, seed: int = 3) -> Scheduler:
    return Scheduler(config, world.states, world.inflight, rng=random.Random(seed))


def request(prompt: str | None = None) -> PickRequest:
    return PickRequest("m", {"model": "m", "prompt": prompt} if prompt else None, {})


def test_weighted_scores_add_up_and_the_highest_total_wins(world):
    world.scraped(0, waiting=0, kv=0.9)  # queue best, kv worst
    world.scraped(1, waiting=10, kv=0.0)  # kv best, queue worst
    world.scraped(2, waiting=5, kv=0.5)
    queue_heavy = SchedulerConfig(scorers=(("queue", 3.0), ("kv-cache", 1.0)))
    kv_heavy = SchedulerConfig(scorers=(("queue", 1.0), ("kv-cache", 3.0)))
    assert scheduler(world, queue_heavy).pick(world.pool, request(), ()) is world.endpoints[0]
    assert scheduler(world, kv_heavy).pick(world.pool, request(), ()) is world.endpoints[1]


def test_zero_weight_scorers_do_not_run(world):
    config = SchedulerConfig(scorers=(("queue", 0.0), ("round-robin", 1.0)))
    assert [s.name for s in scheduler(world, config).scorers] == ["round-robin"]


def test_ties_are_broken_at_random(world):
    sched = scheduler(world, SchedulerConfig(scorers=(("queue", 1.0),)))
    picks = Counter(sched.pick(world.pool, request(), ()).key for _ in range(300))
    assert len(picks) == 3 and min(picks.values()) > 50


def test_excluded_endpoints_are_never_picked_and_none_left_gives_none(world):
    sched = scheduler(world, DEFAULT_SCHEDULER)
    keys = [e.key for e in world.endpoints]
    for _ in range(20):
        assert sched.pick(world.pool, request(), keys[:2]) is world.endpoints[2]
    assert sched.pick(world.pool, request(), keys) is None


def test_filters_leaving_nothing_mean_overloaded(world):
    for i in range(3):
        world.scraped(i, waiting=20)
    sched = scheduler(world, SchedulerConfig(filters=("least-request",), scorers=(("queue", 1.0),)))
    first = request()
    with pytest.raises(errors.Overloaded, match="least-request"):
        sched.pick(world.pool, first, ())
    assert sched.pick(world.pool, first, [world.endpoints[0].key]) is None  # a retry just ends
    with pytest.raises(errors.Overloaded):  # a first pick with endpoints left out (ejected) is still a 429
        sched.pick(world.pool, request(), [world.endpoints[0].key])


class _Fixed:
    def __init__(self, scores):
        self.scores = scores

    def score(self, ctx, endpoints):
        return list(self.scores)


def test_scores_are_clamped_to_zero_and_one():
    world = World(2)
    sched = scheduler(world, SchedulerConfig(scorers=(("queue", 1.0),)))
    # Unclamped, endpoint 0 would total 5.0 and endpoint 1 -1.8; clamped they are 1.0 and 1.2.
    sched.scorers = (_Stage("wild", _Fixed([5.0, -3.0]), 1.0), _Stage("fixed", _Fixed([0.0, 0.8]), 1.5))
    assert sched.pick(world.pool, request(), ()) is world.endpoints[1]


def test_default_pipeline_avoids_a_long_queue_and_spreads_bursts():
    world = World(2)
    world.scraped(0, waiting=30)
    world.scraped(1, waiting=0)
    sched = scheduler(world, DEFAULT_SCHEDULER)
    chosen = []
    for n in range(20):  # a burst between two scrapes: only in-flight counts move
        endpoint = sched.pick(world.pool, request(f"distinct prompt {n} " * 10), ())
        world.inflight.acquire(endpoint.key)
        chosen.append(endpoint)
    assert chosen.count(world.endpoints[1]) >= 19


def test_default_pipeline_keeps_a_shared_prefix_on_the_endpoint_that_served_it():
    world = World(4)
    sched = scheduler(world, DEFAULT_SCHEDULER)
    prompt = "System: you are a careful assistant who answers in French. " * 8
    first = sched.pick(world.pool, (req := request(prompt + "Question 0")), ())
    sched.served(req, first)
    for n in range(1, 10):
        req = request(prompt + f"Question {n}")
        assert sched.pick(world.pool, req, ()) is first
        sched.served(req, first)


def test_forget_reaches_learning_plugins(world):
    sched = scheduler(world, DEFAULT_SCHEDULER)
    req = request("p" * 640)
    sched.served(req, sched.pick(world.pool, req, ()))
    sched.forget(set())
    prefix = next(s.plugin for s in sched.scorers if s.name == "prefix-cache")
    assert len(prefix.index) == 0


def test_plugin_time_is_reported_per_plugin_and_kind(world):
    seen = []

    class Timer:
        def observe_plugin(self, model, plugin, kind, seconds):
            seen.append((model, plugin, kind))

    sched = Scheduler(SchedulerConfig(filters=("least-request",), scorers=(("queue", 1.0),)), world.states,
                      world.inflight, timer=Timer())
    sched.pick(world.pool, request(), ())
    assert seen == [("m", "least-request", "filter"), ("m", "queue", "score")]


def test_max_score_picker_takes_the_best():
    world = World(3)
    assert MaxScorePicker(random.Random(1)).choose(world.endpoints, [0.1, 0.7, 0.3]) is world.endpoints[1]


def test_weighted_random_picker_draws_in_proportion():
    world = World(2)
    picker = WeightedRandomPicker(random.Random(5))
    picks = Counter(picker.choose(world.endpoints, [1.0, 3.0]) for _ in range(4000))
    share = picks[world.endpoints[1]] / 4000
    assert 0.70 < share < 0.80
    zero = Counter(picker.choose(world.endpoints, [0.0, 0.0]) for _ in range(200))
    assert len(zero) == 2

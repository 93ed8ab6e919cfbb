import time

import pytest

from kthena_router.scheduling.saturation import Thresholds, headroom, saturated

from .conftest import World

LIMITS = Thresholds(queue=5, kv=0.8)


def test_a_pool_with_one_endpoint_under_both_thresholds_is_not_saturated():
    world = World(2)
    world.scraped(0, waiting=9, kv=0.1)
    world.scraped(1, waiting=5, kv=0.8)
    assert not saturated(world.endpoints, world.states, time.monotonic(), LIMITS)


def test_queue_or_kv_over_threshold_everywhere_saturates():
    world = World(2)
    world.scraped(0, waiting=6, kv=0.1)
    world.scraped(1, waiting=0, kv=0.81)
    assert saturated(world.endpoints, world.states, time.monotonic(), LIMITS)


def test_stale_metrics_do_not_count_as_capacity():
    world = World(1)
    world.scraped(0, waiting=0, kv=0.0, age=5)
    assert saturated(world.endpoints, world.states, time.monotonic(), LIMITS)


def test_endpoints_that_never_reported_metrics_count_as_available():
    world = World(2)
    world.scraped(0, waiting=50)
    assert not saturated(world.endpoints, world.states, time.monotonic(), LIMITS)


def test_headroom_sums_room_under_the_queue_threshold():
    world = World(3)
    world.scraped(0, waiting=2)
    world.scraped(1, waiting=5)
    world.scraped(2, waiting=9)
    room, _ = headroom(world.endpoints, world.states, time.monotonic(), LIMITS)
    assert room == 4 + 1


def test_thresholds_are_checked():
    with pytest.raises(ValueError):
        Thresholds(queue=-1)
    with pytest.raises(ValueError):
        Thresholds(kv=1.5)

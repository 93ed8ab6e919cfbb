from kthena_router.scheduling.framework import build_args
from kthena_router.scheduling.plugins import least_request


def plugin(world, **args):
    return least_request.Plugin(build_args(least_request.Args, args, "args"), world.env)


def test_filter_drops_endpoints_whose_queue_reached_the_limit(world):
    world.scraped(0, waiting=10)
    world.scraped(1, waiting=9)
    kept = plugin(world, maxWaitingRequests=10).filter(world.ctx(), world.endpoints)
    assert kept == world.endpoints[1:]  # endpoint 2 has no metrics and is kept


def test_filter_keeps_endpoints_with_stale_metrics(world):
    world.scraped(0, waiting=50, age=10)
    assert world.endpoints[0] in plugin(world).filter(world.ctx(), world.endpoints)


def test_score_prefers_fewest_in_flight_plus_waiting(world):
    world.inflight.acquire(world.endpoints[0].key)
    world.inflight.acquire(world.endpoints[0].key)
    world.scraped(1, waiting=4)
    assert plugin(world).score(world.ctx(), world.endpoints) == [0.5, 0.0, 1.0]


def test_equal_load_scores_one_everywhere(world):
    assert plugin(world).score(world.ctx(), world.endpoints) == [1.0, 1.0, 1.0]


def test_bad_max_waiting_is_rejected():
    import pytest

    from kthena_router.scheduling.framework import ConfigError

    with pytest.raises(ConfigError, match="maxWaitingRequests"):
        build_args(least_request.Args, {"maxWaitingRequests": 0}, "args")

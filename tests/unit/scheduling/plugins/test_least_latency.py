import pytest

from kthena_router.scheduling.framework import ConfigError, build_args
from kthena_router.scheduling.plugins import least_latency


def test_lowest_ttft_and_tpot_win_with_equal_weight(world):
    world.scraped(0, ttft=0.1, tpot=0.05)
    world.scraped(1, ttft=0.3, tpot=0.01)
    world.scraped(2)  # no latency data yet
    plugin = least_latency.Plugin(least_latency.Args(), world.env)
    assert plugin.score(world.ctx(), world.endpoints) == [0.5, 0.5, 0.5]


def test_weight_factor_favours_ttft(world):
    world.scraped(0, ttft=0.1, tpot=0.05)
    world.scraped(1, ttft=0.3, tpot=0.01)
    args = build_args(least_latency.Args, {"TTFTTPOTWeightFactor": 1.0}, "args")
    scores = least_latency.Plugin(args, world.env).score(world.ctx(), world.endpoints)
    assert scores[0] == 1.0 and scores[1] == 0.0


def test_weight_factor_outside_zero_to_one_is_rejected():
    with pytest.raises(ConfigError, match="TTFTTPOTWeightFactor"):
        build_args(least_latency.Args, {"TTFTTPOTWeightFactor": 1.5}, "args")


def test_router_measurements_stand_in_where_the_server_reports_none(world):
    world.scraped(0, ttft=0.2, tpot=0.02)
    plugin = least_latency.Plugin(least_latency.Args(), world.env)
    plugin.on_finished(world.ctx(), world.endpoints[1], 0.05, 0.01)  # faster than endpoint 0 reports
    scores = plugin.score(world.ctx(), world.endpoints)
    assert scores[1] == 1.0 and scores[0] == 0.0 and scores[2] == 0.5


def test_measurements_are_smoothed_and_forgotten_with_their_endpoint(world):
    plugin = least_latency.Plugin(build_args(least_latency.Args, {"smoothing": 0.5}, "args"), world.env)
    plugin.on_finished(world.ctx(), world.endpoints[0], 1.0, 0.1)
    plugin.on_finished(world.ctx(), world.endpoints[0], 3.0, 0.3)
    assert plugin.measured[world.endpoints[0].key] == pytest.approx([2.0, 0.2])
    plugin.forget(set())
    assert plugin.measured == {}

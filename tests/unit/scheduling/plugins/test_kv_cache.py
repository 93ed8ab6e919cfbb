import pytest

from kthena_router.scheduling.plugins import kv_cache


def test_score_is_free_kv_space(world):
    world.scraped(0, kv=0.25)
    world.scraped(1, kv=0.9)
    scores = kv_cache.Plugin(kv_cache.Args(), world.env).score(world.ctx(), world.endpoints)
    assert scores == [0.75, pytest.approx(0.1), 0.5]

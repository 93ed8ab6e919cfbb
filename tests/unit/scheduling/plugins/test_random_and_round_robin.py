from kthena_router.scheduling.plugins import random_score, round_robin


def test_random_scores_are_within_zero_and_one(world):
    plugin = random_score.Plugin(random_score.Args(), world.env)
    scores = plugin.score(world.ctx(), world.endpoints)
    assert len(scores) == 3 and all(0.0 <= s < 1.0 for s in scores)
    assert scores != plugin.score(world.ctx(), world.endpoints)


def test_round_robin_takes_turns(world):
    plugin = round_robin.Plugin(round_robin.Args(), world.env)
    winners = [plugin.score(world.ctx(), world.endpoints).index(1.0) for _ in range(6)]
    assert winners == [0, 1, 2, 0, 1, 2]

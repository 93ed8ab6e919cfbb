from kthena_router.scheduling.plugins import queue


def test_shortest_queue_scores_one_longest_zero(world):
    world.scraped(0, waiting=10)
    world.scraped(1, waiting=0)
    world.scraped(2, waiting=5)
    assert queue.Plugin(queue.Args(), world.env).score(world.ctx(), world.endpoints) == [0.0, 1.0, 0.5]


def test_endpoints_without_fresh_metrics_score_half(world):
    world.scraped(0, waiting=3)
    world.scraped(1, waiting=0, age=5)
    assert queue.Plugin(queue.Args(), world.env).score(world.ctx(), world.endpoints) == [1.0, 0.5, 0.5]

from kthena_router.scheduling.framework import build_args
from kthena_router.scheduling.plugins import prefix_cache

PROMPT = "You are a helpful assistant. " * 20  # 580 characters: 9 blocks of 64


def test_served_endpoint_scores_the_share_of_matched_blocks(world):
    plugin = prefix_cache.Plugin(prefix_cache.Args(), world.env)
    first = world.ctx(payload={"prompt": PROMPT})
    assert plugin.score(first, world.endpoints) == [0.0, 0.0, 0.0]
    plugin.on_served(first, world.endpoints[1])
    again = world.ctx(payload={"prompt": PROMPT + " and then some more text"})
    scores = plugin.score(again, world.endpoints)
    assert scores[0] == 0.0 and scores[2] == 0.0
    assert scores[1] == 9 / 9


def test_other_models_do_not_match(world):
    plugin = prefix_cache.Plugin(prefix_cache.Args(), world.env)
    ctx = world.ctx("model-a", payload={"prompt": PROMPT})
    plugin.score(ctx, world.endpoints)
    plugin.on_served(ctx, world.endpoints[0])
    assert plugin.score(world.ctx("model-b", payload={"prompt": PROMPT}), world.endpoints) == [0.0] * 3


def test_short_prompts_score_zero(world):
    plugin = prefix_cache.Plugin(build_args(prefix_cache.Args, {"blockSize": 16}, "args"), world.env)
    assert plugin.score(world.ctx(payload={"prompt": "short"}), world.endpoints) == [0.0] * 3


def test_forget_drops_endpoints_that_left(world):
    plugin = prefix_cache.Plugin(prefix_cache.Args(), world.env)
    ctx = world.ctx(payload={"prompt": PROMPT})
    plugin.on_served(ctx, world.endpoints[0])
    plugin.forget({world.endpoints[1].key})
    assert plugin.score(world.ctx(payload={"prompt": PROMPT}), world.endpoints) == [0.0] * 3


def test_top_k_matches_keeps_the_longest_matches_only(world):
    short = PROMPT[:3 * 64]
    scores = {}
    for k in (0, 2):
        plugin = prefix_cache.Plugin(build_args(prefix_cache.Args, {"topKMatches": k}, "args"), world.env)
        for endpoint, prompt in zip(world.endpoints, (PROMPT, PROMPT, short), strict=True):
            plugin.on_served(world.ctx(payload={"prompt": prompt}), endpoint)
        scores[k] = plugin.score(world.ctx(payload={"prompt": PROMPT}), world.endpoints)
    assert scores[0] == [1.0, 1.0, 3 / 9]
    assert scores[2] == [1.0, 1.0, 0.0]


def test_kthena_argument_names_are_accepted():
    args = build_args(prefix_cache.Args, {"blockSizeToHash": 32, "maxHashCacheSize": 100, "topKMatches": 5}, "a")
    assert (args.block_size, args.lru_capacity_per_server, args.top_k_matches) == (32, 100, 5)

from kthena_router.scheduling.plugins import session_affinity

from ..conftest import World


def test_the_same_session_always_gets_the_same_endpoint(world):
    plugin = session_affinity.Plugin(session_affinity.Args(), world.env)
    first = plugin.score(world.ctx(headers={"x-session-id": "abc"}), world.endpoints)
    assert sorted(first) == [0.0, 0.0, 1.0]
    for _ in range(5):
        assert plugin.score(world.ctx(headers={"x-session-id": "abc"}), world.endpoints) == first


def test_sessions_spread_and_only_a_leaving_endpoints_sessions_move():
    world = World(4)
    plugin = session_affinity.Plugin(session_affinity.Args(), world.env)
    before = {}
    for n in range(200):
        scores = plugin.score(world.ctx(headers={"x-session-id": f"s{n}"}), world.endpoints)
        before[n] = world.endpoints[scores.index(1.0)]
    assert len(set(before.values())) == 4
    remaining = world.endpoints[:3]
    for n, chosen in before.items():
        scores = plugin.score(world.ctx(headers={"x-session-id": f"s{n}"}), remaining)
        if chosen in remaining:
            assert remaining[scores.index(1.0)] == chosen


def test_requests_without_the_header_score_zero(world):
    plugin = session_affinity.Plugin(session_affinity.Args(header="x-user"), world.env)
    assert plugin.score(world.ctx(headers={"x-session-id": "abc"}), world.endpoints) == [0.0] * 3

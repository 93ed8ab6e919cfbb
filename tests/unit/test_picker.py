import random

from kthena_router.api.meta import ObjectRef
from kthena_router.scheduling.picker import InFlight, LeastInFlightPicker, PickRequest
from kthena_router.snapshot import Endpoint, EndpointKey, Pool


def _pool(n: int) -> Pool:
    endpoints = tuple(Endpoint(EndpointKey(f"10.0.0.{i}", 8000), ObjectRef("ns", f"p{i}"), "vllm",
                               f"10.0.0.{i}:8000") for i in range(n))
    return Pool(ObjectRef("ns", "pool"), endpoints)


REQ = PickRequest("m", None, {})


def test_the_least_loaded_endpoint_is_picked():
    inflight = InFlight()
    pool = _pool(3)
    inflight.acquire(pool.endpoints[0].key)
    inflight.acquire(pool.endpoints[2].key)
    assert LeastInFlightPicker(inflight).pick(pool, REQ, ()) is pool.endpoints[1]


def test_ties_are_broken_at_random_across_all_tied_endpoints():
    picker = LeastInFlightPicker(InFlight(), random.Random(1))
    pool = _pool(4)
    seen = {picker.pick(pool, REQ, ()).key for _ in range(200)}
    assert len(seen) == 4


def test_a_burst_is_spread_because_counts_update_on_dispatch():
    inflight = InFlight()
    picker = LeastInFlightPicker(inflight, random.Random(2))
    pool = _pool(4)
    for _ in range(8):
        inflight.acquire(picker.pick(pool, REQ, ()).key)
    assert sorted(inflight.counts.values()) == [2, 2, 2, 2]


def test_excluded_endpoints_are_never_picked_and_none_when_all_are_excluded():
    pool = _pool(2)
    picker = LeastInFlightPicker(InFlight())
    assert picker.pick(pool, REQ, [pool.endpoints[0].key]) is pool.endpoints[1]
    assert picker.pick(pool, REQ, [e.key for e in pool.endpoints]) is None


def test_release_returns_counts_to_zero():
    inflight = InFlight()
    key = EndpointKey("a", 1)
    inflight.acquire(key)
    inflight.release(key)
    inflight.release(key)
    assert inflight.counts == {} and inflight.total() == 0

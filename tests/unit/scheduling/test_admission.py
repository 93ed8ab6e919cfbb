import asyncio

import pytest

from kthena_router import errors
from kthena_router.api.meta import ObjectRef
from kthena_router.scheduling.admission import Admission, priority_of
from kthena_router.scheduling.saturation import Thresholds

from .conftest import World


class Recorder:
    def __init__(self):
        self.sizes, self.waits, self.sheds = [], [], []

    def queue_size(self, pool, size):
        self.sizes.append(size)

    def queue_wait(self, pool, seconds, outcome):
        self.waits.append(outcome)

    def shed(self, pool, reason):
        self.sheds.append(reason)


def setup(n=1, **kwargs):
    world = World(n)
    recorder = Recorder()
    admission = Admission(world.states, thresholds=Thresholds(5, 0.8), observer=recorder,
                          **{"max_queued": 10, "timeout": 5.0, **kwargs})
    return world, admission, recorder


def saturate(world):
    for i in range(len(world.endpoints)):
        world.scraped(i, waiting=20)


def free(world, waiting=0):
    for i in range(len(world.endpoints)):
        world.scraped(i, waiting=waiting)


async def test_an_unsaturated_pool_admits_at_once():
    world, admission, _ = setup()
    free(world)
    await admission.admit(world.pool, -5)


async def test_sheddable_requests_get_429_when_saturated():
    world, admission, recorder = setup()
    saturate(world)
    with pytest.raises(errors.Overloaded, match="saturated"):
        await admission.admit(world.pool, -1)
    assert recorder.sheds == ["saturated"]


async def test_queued_requests_leave_in_priority_order_then_fifo():
    world, admission, _ = setup()
    saturate(world)
    order = []

    async def one(name, priority):
        await admission.admit(world.pool, priority)
        order.append(name)

    tasks = []
    for name, priority in (("low-1", 0), ("high-1", 10), ("low-2", 0), ("mid", 5), ("high-2", 10)):
        tasks.append(asyncio.create_task(one(name, priority)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert order == [] and admission.queued(world.pool.ref) == 5
    for _ in range(5):
        free(world, waiting=5)  # room for exactly one more request per scrape
        world.states.get(world.endpoints[0].key).updated_at += 0.001  # a newer scrape each time
        admission.poll()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["high-1", "high-2", "mid", "low-1", "low-2"]


async def test_a_request_waiting_too_long_gets_queue_timeout():
    world, admission, recorder = setup(timeout=0.05)
    saturate(world)
    with pytest.raises(errors.QueueTimeout):
        await admission.admit(world.pool, 0)
    assert admission.queued(world.pool.ref) == 0
    assert recorder.sheds == ["queue_timeout"] and recorder.waits == ["timeout"]
    assert errors.QueueTimeout.status == 503


async def test_a_cancelled_waiter_frees_its_place():
    world, admission, recorder = setup(max_queued=1)
    saturate(world)
    waiter = asyncio.create_task(admission.admit(world.pool, 0))
    await asyncio.sleep(0.01)
    assert admission.queued(world.pool.ref) == 1
    with pytest.raises(errors.Overloaded, match="full"):
        await admission.admit(world.pool, 0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.queued(world.pool.ref) == 0
    assert recorder.waits == ["cancelled"]
    second = asyncio.create_task(admission.admit(world.pool, 0))  # the place is free again
    await asyncio.sleep(0.01)
    free(world)
    admission.poll()
    await asyncio.wait_for(second, 1)


async def test_new_requests_queue_behind_waiters_even_when_room_appears():
    world, admission, _ = setup()
    saturate(world)
    first = asyncio.create_task(admission.admit(world.pool, 0))
    await asyncio.sleep(0.01)
    free(world, waiting=5)  # room for one: the waiter, not the newcomer
    second = asyncio.create_task(admission.admit(world.pool, 0))
    await asyncio.sleep(0.01)
    assert first.done() and not second.done()
    second.cancel()


async def test_removed_pools_fail_their_waiters_with_no_endpoints():
    world, admission, _ = setup()
    saturate(world)
    waiter = asyncio.create_task(admission.admit(world.pool, 0))
    await asyncio.sleep(0.01)
    admission.update_pools({})
    with pytest.raises(errors.NoEndpoints):
        await waiter


def test_priority_comes_from_the_objective_of_the_same_pool():
    world = World(1)
    objectives = {ObjectRef("ns", "batch"): ("pool", -1), ObjectRef("ns", "other"): ("another-pool", 7),
                  ObjectRef("ns", "chat"): ("pool", 3)}
    assert priority_of(objectives, world.pool, "batch") == -1
    assert priority_of(objectives, world.pool, "chat") == 3
    assert priority_of(objectives, world.pool, "other") == 0
    assert priority_of(objectives, world.pool, "missing") == 0
    assert priority_of(objectives, world.pool, None) == 0


async def test_room_appearing_as_a_waiter_is_cancelled_skips_it_without_error():
    """The cancelled waiter's future is done before its cleanup runs; a release in between must pass it by."""
    world, admission, recorder = setup()
    saturate(world)
    leaving = asyncio.create_task(admission.admit(world.pool, 0))
    staying = asyncio.create_task(admission.admit(world.pool, 0))
    await asyncio.sleep(0.01)
    leaving.cancel()  # cancels the future it waits on at once; its finally runs on the next loop turn
    free(world)
    admission.poll()  # used to raise InvalidStateError and kill the scraper task that called it
    await asyncio.wait_for(staying, 1)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert admission.queued(world.pool.ref) == 0

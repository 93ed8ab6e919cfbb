"""Passive outlier detection, rule by rule, with a hand-driven clock."""

from __future__ import annotations

import time

import pytest

from kthena_router import errors
from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.outlier import OutlierDetector
from kthena_router.endpoints.state import EndpointStates
from kthena_router.metrics import RouterMetrics
from kthena_router.scheduling.config import SchedulerConfig
from kthena_router.scheduling.picker import InFlight, PickRequest
from kthena_router.scheduling.scheduler import Scheduler
from kthena_router.snapshot import Endpoint, EndpointKey, Pool

KEYS = [EndpointKey(f"127.0.0.{i}", 8000) for i in range(2, 6)]
OTHER = EndpointKey("127.0.0.9", 8000)  # in no pool below


def pool_of(*keys: EndpointKey) -> Pool:
    return Pool(ObjectRef("default", "p"),
                tuple(Endpoint(k, ObjectRef("default", f"pod-{k.ip}"), "vllm", f"{k.ip}:{k.port}") for k in keys))


POOL = pool_of(*KEYS)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def detector(failures=3, base=10.0, percent=50):
    clock = Clock()
    changes: list[tuple[EndpointKey, bool]] = []
    d = OutlierDetector(failures, base, percent, clock=clock, on_change=lambda k, e: changes.append((k, e)))
    return d, clock, changes


def fail(d: OutlierDetector, key: EndpointKey, times: int) -> None:
    for _ in range(times):
        d.failure(key)


def test_consecutive_failures_eject_and_a_success_in_between_resets_the_count():
    d, _, changes = detector(failures=3)
    a = KEYS[0]
    fail(d, a, 2)
    d.success(a)
    fail(d, a, 2)
    assert not d.is_ejected(a) and changes == []
    d.failure(a)
    assert d.is_ejected(a) and changes == [(a, True)] and d.ejections_total == 1
    assert set(d.excluded(POOL, [])) == {a}


def test_an_ejection_lasts_the_base_time_and_ends_by_itself():
    d, clock, changes = detector(failures=1, base=10.0)
    a = KEYS[0]
    d.failure(a)
    assert d.is_ejected(a, now=clock.now + 9.9)
    assert not d.is_ejected(a, now=clock.now + 10.0)
    clock.now += 10.0
    assert d.excluded(POOL, []) == [] and changes == [(a, True), (a, False)]


def test_repeated_ejections_double_up_to_ten_times_the_base():
    d, clock, _ = detector(failures=1, base=10.0)
    a = KEYS[0]
    durations = []
    for _ in range(6):
        d.failure(a)
        start = clock.now
        while d.is_ejected(a):
            clock.now += 1.0
        durations.append(clock.now - start)
    assert durations == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]
    assert d.ejections_total == 6


def test_after_an_ejection_one_failure_ejects_again():
    d, clock, changes = detector(failures=3, base=10.0)
    a = KEYS[0]
    fail(d, a, 3)
    clock.now += 10.0
    d.failure(a)  # on probation: one failure is enough, for twice as long
    assert d.is_ejected(a, now=clock.now + 19.9) and not d.is_ejected(a, now=clock.now + 20.0)
    assert changes == [(a, True), (a, True)]


def test_a_success_after_an_ejection_clears_the_record():
    d, clock, _ = detector(failures=3, base=10.0)
    a = KEYS[0]
    fail(d, a, 3)
    clock.now += 10.0
    d.success(a)
    fail(d, a, 2)
    assert not d.is_ejected(a)  # counting from zero again
    d.failure(a)
    assert d.is_ejected(a, now=clock.now + 9.9) and not d.is_ejected(a, now=clock.now + 10.0)  # base again


def test_a_success_while_ejected_neither_ends_the_ejection_nor_the_probation():
    d, clock, _ = detector(failures=3, base=10.0)
    a = KEYS[0]
    fail(d, a, 3)
    clock.now += 5.0
    d.success(a)  # a request sent before the ejection
    assert d.is_ejected(a)
    clock.now += 5.0
    d.failure(a)
    assert d.is_ejected(a)


def test_failures_while_ejected_do_not_extend_it():
    d, clock, _ = detector(failures=1, base=10.0)
    a = KEYS[0]
    d.failure(a)
    clock.now += 5.0
    fail(d, a, 5)
    clock.now += 5.0
    assert not d.is_ejected(a) and d.ejections_total == 1


def test_never_more_than_the_percent_of_a_pool_and_the_first_ejections_are_honoured():
    d, clock, _ = detector(failures=1, percent=50)
    for key in (KEYS[2], KEYS[0], KEYS[1]):
        d.failure(key)
        clock.now += 0.1
    assert set(d.excluded(POOL, [])) == {KEYS[2], KEYS[0]}  # 50% of 4 is 2


def test_the_percent_rounds_down_but_allows_at_least_one():
    d, _, _ = detector(failures=1, percent=50)
    three = pool_of(*KEYS[:3])
    fail(d, KEYS[0], 1)
    fail(d, KEYS[1], 1)
    assert set(d.excluded(three, [])) == {KEYS[0]}  # 50% of 3 is 1.5
    small, _, _ = detector(failures=1, percent=10)
    fail(small, KEYS[0], 1)
    assert set(small.excluded(POOL, [])) == {KEYS[0]}  # 10% of 4 rounds to 0: one is still allowed


def test_when_nothing_would_be_left_the_pool_is_used_whole():
    d, _, _ = detector(failures=1, percent=100)
    for key in KEYS:
        d.failure(key)
    assert d.excluded(POOL, []) == []
    single = pool_of(KEYS[0])
    assert d.excluded(single, []) == []  # a pool of one is never emptied
    two = pool_of(*KEYS[:2])
    tried = [KEYS[0]]
    assert d.excluded(two, tried) is tried  # a retry may go to the ejected one rather than nowhere


def test_without_ejections_in_the_pool_the_tried_list_comes_back_as_is():
    d, _, _ = detector(failures=1)
    tried = [KEYS[1]]
    assert d.excluded(POOL, tried) is tried
    d.failure(OTHER)  # ejected, but in another pool
    assert d.excluded(POOL, tried) is tried


def test_tried_endpoints_stay_excluded_along_with_ejected_ones():
    d, _, _ = detector(failures=1)
    d.failure(KEYS[0])
    assert set(d.excluded(POOL, [KEYS[1]])) == {KEYS[0], KEYS[1]}


@pytest.mark.parametrize(("failures", "percent"), [(0, 50), (3, 0)])
def test_zero_failures_or_zero_percent_turns_detection_off(failures, percent):
    d, _, changes = detector(failures=failures, percent=percent)
    fail(d, KEYS[0], 10)
    assert not d.enabled and not d.is_ejected(KEYS[0]) and changes == []
    assert d.excluded(POOL, []) == []


def test_endpoints_that_leave_are_forgotten():
    d, _, changes = detector(failures=1)
    d.failure(KEYS[0])
    fail(d, KEYS[1], 1)
    d.forget({KEYS[1]})
    assert not d.is_ejected(KEYS[0]) and changes[-1] == (KEYS[0], False)
    assert d.ejected_keys() == [KEYS[1]]
    d.failure(KEYS[0])  # back in a pool later: a new record, a base-length ejection
    assert d.is_ejected(KEYS[0]) and d.ejected_keys() == [KEYS[1], KEYS[0]]


def test_listing_the_ejected_endpoints_reports_ended_ejections():
    d, clock, changes = detector(failures=1, base=10.0)
    d.failure(KEYS[0])
    clock.now += 5.0
    d.failure(KEYS[1])
    clock.now += 5.0
    assert d.ejected_keys() == [KEYS[1]] and changes[-1] == (KEYS[0], False)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        OutlierDetector(1, -1.0, 50)
    with pytest.raises(ValueError):
        OutlierDetector(1, 1.0, 101)


def picking(failures: int = 1):
    """The detector and a scheduler whose only filter is least-request, composed as the proxy composes them."""
    states = EndpointStates(stale_after=60.0)
    sched = Scheduler(SchedulerConfig(filters=("least-request",), scorers=(("queue", 1.0),)), states, InFlight())
    d, _, _ = detector(failures=failures)
    return d, sched, states


def test_picking_skips_ejected_endpoints_and_uses_them_when_nothing_else_is_left():
    d, sched, _ = picking()
    two = pool_of(*KEYS[:2])
    d.failure(KEYS[0])
    for _ in range(20):
        assert sched.pick(two, PickRequest("m", None, {}), d.excluded(two, [])).key == KEYS[1]
    retry = PickRequest("m", None, {})
    assert sched.pick(two, retry, d.excluded(two, [KEYS[1]])).key == KEYS[0]  # fail open on the retry


def test_an_ejection_does_not_turn_an_overloaded_pool_into_a_502():
    d, sched, states = picking()
    two = pool_of(*KEYS[:2])
    state = states.add(KEYS[1], "vllm")
    state.waiting = 50  # over least-request's maxWaitingRequests
    state.updated_at = time.monotonic()
    d.failure(KEYS[0])
    with pytest.raises(errors.Overloaded):
        sched.pick(two, PickRequest("m", None, {}), d.excluded(two, []))


def test_expire_ends_ejections_whose_time_is_up_without_a_pick():
    d, clock, changes = detector(failures=1, base=10.0)
    a, b = KEYS[0], KEYS[1]
    d.failure(a)
    clock.now += 5
    d.failure(b)
    clock.now += 5  # a's ten seconds are up, b has five left
    d.expire()
    assert changes == [(a, True), (b, True), (a, False)]
    d.expire()
    assert changes[-1] == (a, False) and len(changes) == 3
    clock.now += 5
    d.expire()
    assert changes[-1] == (b, False) and d.ejected_keys() == []


def test_the_ejected_gauge_reads_0_once_the_time_is_up_even_if_nothing_picks():
    metrics = RouterMetrics()
    clock = Clock()
    d = OutlierDetector(1, 10.0, 50, clock=clock,
                        on_change=lambda k, e: metrics.endpoint_ejected(f"{k.ip}:{k.port}", e))
    metrics.refreshers.append(d.expire)
    d.failure(KEYS[0])
    series = f'kthena_router_endpoint_ejected{{endpoint="{KEYS[0].ip}:{KEYS[0].port}"}}'
    assert f"{series} 1.0" in metrics.render()[0].decode()
    clock.now += 10
    assert f"{series} 0.0" in metrics.render()[0].decode()

"""Passive outlier detection with a hand-driven clock."""

from __future__ import annotations

from kthena_router.api.meta import ObjectRef
from kthena_router.endpoints.outlier import OutlierDetector
from kthena_router.snapshot import Endpoint, EndpointKey, Pool

KEYS = [EndpointKey(f"127.0.0.{i}", 8000) for i in range(2, 6)]
POOL = Pool(ObjectRef("default", "p"),
            tuple(Endpoint(k, ObjectRef("default", f"pod-{i}"), "vllm", f"{k.ip}:{k.port}") for i, k in enumerate(KEYS)))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def detector(failures=3, base=10.0, percent=50):
    clock = Clock()
    changes = []
    d = OutlierDetector(failures, base, percent, clock=clock, on_change=lambda k, e: changes.append((k, e)))
    return d, clock, changes


def test_consecutive_failures_eject_and_a_success_in_between_resets_the_count():
    d, _, changes = detector()
    a = KEYS[0]
    d.failure(a)
    d.failure(a)
    d.success(a)
    d.failure(a)
    d.failure(a)
    assert not d.is_ejected(a)
    d.failure(a)
    assert d.is_ejected(a) and changes == [(a, True)]
    assert set(d.excluded(POOL, [])) == {a}


def test_the_ejection_ends_and_repeats_double_up_to_ten_times_the_base():
    d, clock, changes = detector(failures=1, base=10.0)
    a = KEYS[0]
    durations = []
    for _ in range(6):
        d.failure(a)
        start = clock.now
        while d.is_ejected(a):
            clock.now += 1.0
        durations.append(clock.now - start)
        d.excluded(POOL, [])  # notices the end
    assert durations == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]
    assert changes[:2] == [(a, True), (a, False)]


def test_after_an_ejection_one_failure_ejects_again_and_a_success_clears_the_record():
    d, clock, _ = detector(failures=3, base=10.0)
    a = KEYS[0]
    for _ in range(3):
        d.failure(a)
    clock.now += 11
    d.failure(a)  # on probation: one failure is enough
    assert d.is_ejected(a)
    clock.now += 21
    d.success(a)
    d.failure(a)
    assert not d.is_ejected(a)  # back to counting from zero


def test_failures_while_ejected_do_not_extend_it():
    d, clock, _ = detector(failures=1, base=10.0)
    a = KEYS[0]
    d.failure(a)
    clock.now += 5
    d.failure(a)
    clock.now += 5.5
    assert not d.is_ejected(a)


def test_never_more_than_the_percent_of_a_pool_and_never_all_of_it():
    d, clock, _ = detector(failures=1, percent=50)
    for key in KEYS[:3]:
        d.failure(key)
        clock.now += 0.1
    out = d.excluded(POOL, [])
    assert len(out) == 2 and set(out) <= set(KEYS[:3])
    d2, _, _ = detector(failures=1, percent=100)
    for key in KEYS:
        d2.failure(key)
    assert d2.excluded(POOL, []) == []  # everything failing: use the pool whole
    assert set(d2.excluded(POOL, [KEYS[0]])) == {KEYS[0]}


def test_without_ejections_the_tried_list_comes_back_as_is_and_zero_disables():
    d, _, _ = detector()
    tried = [KEYS[1]]
    assert d.excluded(POOL, tried) is tried
    off, _, changes = detector(failures=0)
    for _ in range(10):
        off.failure(KEYS[0])
    assert not off.enabled and not off.is_ejected(KEYS[0]) and not changes


def test_endpoints_that_leave_are_forgotten():
    d, _, changes = detector(failures=1)
    d.failure(KEYS[0])
    d.forget({KEYS[1]})
    assert not d.is_ejected(KEYS[0]) and changes[-1] == (KEYS[0], False)

"""Per-pool schedulers from the `kthena.io/scheduler-config` annotation, as the proxy's picker sees them."""

import dataclasses
import logging
import random
from collections import Counter

import pytest

from kthena_router.api.meta import ObjectRef
from kthena_router.scheduling.config import DEFAULT_SCHEDULER, SchedulerConfig, parse_scheduler_text
from kthena_router.scheduling.framework import ConfigError
from kthena_router.scheduling.picker import PickRequest
from kthena_router.scheduling.scheduler import PoolSchedulers

from .conftest import World

ROUND_ROBIN = "scheduler:\n  plugins: {Score: {enabled: [round-robin]}}\n"


def override(world: World, text: str, name: str = "pool"):
    pool = dataclasses.replace(world.pool, ref=ObjectRef("ns", name),
                               scheduler_config=parse_scheduler_text(text, "annotation"))
    return pool


def schedulers(world: World) -> PoolSchedulers:
    return PoolSchedulers(SchedulerConfig(scorers=(("queue", 1.0),)), world.states, world.inflight,
                          rng=random.Random(5))


def request() -> PickRequest:
    return PickRequest("m", None, {})


def test_annotation_text_needs_a_scheduler_section():
    with pytest.raises(ConfigError, match="annotation: must be a mapping with a `scheduler` section"):
        parse_scheduler_text("plugins: {Score: {enabled: [queue]}}", "annotation")


def test_annotation_text_that_is_not_yaml_is_reported_on_one_line():
    with pytest.raises(ConfigError, match="annotation: not valid YAML") as caught:
        parse_scheduler_text("scheduler: [unclosed", "annotation")
    assert "\n" not in str(caught.value)


def test_annotation_text_is_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"annotation: scheduler.plugins.Score.enabled\[0\].weight"):
        parse_scheduler_text("scheduler:\n  plugins: {Score: {enabled: [{name: queue, weight: -1}]}}", "annotation")
    assert parse_scheduler_text("scheduler: {}", "annotation").scorers == DEFAULT_SCHEDULER.scorers


def test_pools_without_an_override_share_the_router_scheduler():
    world = World(3)
    scheds = schedulers(world)
    other = dataclasses.replace(world.pool, ref=ObjectRef("ns", "other"))
    scheds.sync({world.pool.ref: world.pool, other.ref: other})
    assert scheds.scheduler_of(world.pool) is scheds.default
    assert scheds.scheduler_of(other) is scheds.default


def test_an_overridden_pool_goes_round_robin_while_the_other_follows_the_queue():
    world = World(3)
    for i, waiting in enumerate((0, 5, 9)):
        world.scraped(i, waiting=waiting)
    scheds = schedulers(world)
    rr = override(world, ROUND_ROBIN, "rr")
    scheds.sync({world.pool.ref: world.pool, rr.ref: rr})
    plain = Counter(scheds.pick(world.pool, request(), ()).key for _ in range(30))
    turns = Counter(scheds.pick(rr, request(), ()).key for _ in range(30))
    assert plain == {world.endpoints[0].key: 30}
    assert turns == {e.key: 10 for e in world.endpoints}


def test_a_pool_keeps_its_scheduler_while_the_annotation_is_unchanged():
    world = World(3)
    scheds = schedulers(world)
    first = override(world, ROUND_ROBIN)
    scheds.sync({first.ref: first})
    mine = scheds.scheduler_of(first)
    again = override(world, ROUND_ROBIN)  # the next Snapshot parses an equal configuration
    scheds.sync({again.ref: again})
    assert scheds.scheduler_of(again) is mine
    changed = override(world, "scheduler:\n  plugins: {Score: {enabled: [random]}}\n")
    scheds.sync({changed.ref: changed})
    assert scheds.scheduler_of(changed) is not mine
    assert [s.name for s in scheds.scheduler_of(changed).scorers] == ["random"]


def test_removing_the_annotation_returns_the_pool_to_the_router_scheduler():
    world = World(3)
    scheds = schedulers(world)
    rr = override(world, ROUND_ROBIN)
    scheds.sync({rr.ref: rr})
    scheds.sync({world.pool.ref: world.pool})
    assert scheds.scheduler_of(world.pool) is scheds.default
    assert "pools" not in scheds.describe()


def test_an_invalid_annotation_is_logged_once_and_shown_in_describe(caplog):
    world = World(3)
    scheds = schedulers(world)
    bad = dataclasses.replace(world.pool, scheduler_error="annotation kthena.io/scheduler-config: broken")
    with caplog.at_level(logging.WARNING, logger="kthena_router.scheduling.scheduler"):
        scheds.sync({bad.ref: bad})
        scheds.sync({bad.ref: bad})
    assert [r.getMessage() for r in caplog.records] == [
        "InferencePool ns/pool: annotation kthena.io/scheduler-config: broken; using the router's scheduler"]
    assert scheds.scheduler_of(bad) is scheds.default
    assert scheds.describe()["invalid"] == {"ns/pool": "annotation kthena.io/scheduler-config: broken"}


def test_retries_and_feedback_go_to_the_scheduler_of_the_first_pick():
    world = World(3)
    scheds = schedulers(world)
    rr = override(world, "scheduler:\n  plugins: {Score: {enabled: [prefix-cache]}}\n")
    scheds.sync({rr.ref: rr})
    req = PickRequest("m", {"model": "m", "prompt": "x" * 200}, {})
    first = scheds.pick(rr, req, ())
    scheds.sync({world.pool.ref: world.pool})  # the override is gone before the retry
    second = scheds.pick(rr, req, (first.key,))
    assert second is not None and second.key != first.key
    assert req.context.owner is not scheds.default
    scheds.served(req, second)
    assert req.context.owner.scorers[0].plugin.index.match(req.context.prompt_hashes, [second.key]) == [3]


def test_a_request_holding_an_older_snapshot_does_not_replace_the_current_scheduler():
    world = World(3)
    scheds = schedulers(world)
    old = override(world, ROUND_ROBIN)
    new = override(world, "scheduler:\n  plugins: {Score: {enabled: [random]}}\n")
    scheds.sync({new.ref: new})
    current = scheds.scheduler_of(new)
    assert scheds.pick(old, request(), ()) is not None
    assert scheds.scheduler_of(new) is current

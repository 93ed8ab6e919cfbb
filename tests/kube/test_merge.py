"""Merging a wanted status into the stored one: other controllers' entries, v1alpha2 pools, clocks."""

from __future__ import annotations

from kthena_router.sources.status import merge_status, without_times

OURS = "volcano.sh/kthena-router"


def cond(type_: str, status: str = "True", when: str | None = None) -> dict:
    c = {"type": type_, "status": status, "reason": type_, "message": "", "observedGeneration": 1}
    if when:
        c["lastTransitionTime"] = when
    return c


def parent(name: str, controller: str | None = OURS, *conds: dict) -> dict:
    entry = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "ns",
                           "name": name}, "conditions": list(conds)}
    if controller:
        entry["controllerName"] = controller
    return entry


def test_route_parents_of_other_controllers_are_kept_and_ours_replaced() -> None:
    current = {"parents": [parent("theirs", "example.com/x", cond("Accepted", when="T0")),
                           parent("old", OURS, cond("Accepted", when="T0"))]}
    wanted = {"parents": [parent("gw", OURS, cond("Accepted"))]}
    merged = merge_status("HTTPRoute", wanted, current, controller_name=OURS, now="T1")
    assert [p["parentRef"]["name"] for p in merged["parents"]] == ["theirs", "gw"]
    assert merged["parents"][0] == current["parents"][0]
    assert merged["parents"][1]["conditions"][0]["lastTransitionTime"] == "T1"


def test_transition_time_is_kept_while_the_condition_status_is_unchanged() -> None:
    current = {"conditions": [cond("Accepted", when="T0"), cond("Programmed", "False", when="T0")]}
    wanted = {"conditions": [cond("Accepted"), cond("Programmed")]}
    merged = merge_status("Gateway", wanted, current, controller_name=OURS, now="T1")
    assert [c["lastTransitionTime"] for c in merged["conditions"]] == ["T0", "T1"]


def test_v1alpha2_pools_are_written_under_parent_without_controller_name() -> None:
    current = {"parent": [parent("foreign", None, cond("Accepted", when="T0")),
                          parent("gw", None, cond("Accepted", when="T0"))]}
    wanted = {"parents": [parent("gw", OURS, cond("Accepted"))]}
    merged = merge_status("InferencePool/v1alpha2", wanted, current, controller_name=OURS, now="T1",
                          owned_gateways=frozenset({("ns", "gw")}))
    assert "parents" not in merged
    assert [p["parentRef"]["name"] for p in merged["parent"]] == ["foreign", "gw"]
    assert "controllerName" not in merged["parent"][1]
    assert merged["parent"][1]["conditions"][0]["lastTransitionTime"] == "T0"
    assert without_times(merged) == without_times(current), "nothing to write"


def test_an_empty_wanted_list_removes_only_our_pool_parents() -> None:
    current = {"parents": [parent("gw", OURS, cond("Accepted", when="T0")),
                           parent("gw", "example.com/x", cond("Accepted", when="T0"))]}
    merged = merge_status("InferencePool", {"parents": []}, current, controller_name=OURS, now="T1")
    assert merged["parents"] == [current["parents"][1]]

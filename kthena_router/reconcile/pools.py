"""InferencePools: their endpoints (Ready pods × target ports), their status parents, and objectives.

Reconcile may run every second with thousands of pods, so pods are indexed once per run by namespace and
label pair; a pool looks up its rarest selector label instead of scanning every pod. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kthena_router.api.core import Pod
from kthena_router.api.inferencepool import InferencePool
from kthena_router.api.meta import GATEWAY_GROUP, ObjectRef
from kthena_router.reconcile import status as st
from kthena_router.resources import Resources
from kthena_router.snapshot import Endpoint, EndpointKey, Pool

EPP_NOT_USED = "endpointPickerRef is not used: kthena-router picks endpoints itself"


class PodIndex:
    """Endpoint pods (Ready, addressed, not deleting) by namespace and by (namespace, label, value)."""

    __slots__ = ("_by_namespace", "_by_label")

    def __init__(self, pods: Iterable[Pod]) -> None:
        by_namespace: dict[str, list[Pod]] = {}
        by_label: dict[tuple[str, str, str], list[Pod]] = {}
        for pod in sorted((p for p in pods if p.is_endpoint), key=lambda p: p.meta.ref):
            ns = pod.meta.namespace
            by_namespace.setdefault(ns, []).append(pod)
            for key, value in pod.meta.labels.items():
                by_label.setdefault((ns, key, value), []).append(pod)
        self._by_namespace = by_namespace
        self._by_label = by_label

    def select(self, pool: InferencePool) -> list[Pod]:
        """Endpoint pods in the pool's namespace matching its selector, by name."""
        ns = pool.meta.namespace
        selector = pool.selector
        if selector.match_labels:
            buckets = [self._by_label.get((ns, key, value), []) for key, value in selector.match_labels]
            candidates = min(buckets, key=len)
        else:
            candidates = self._by_namespace.get(ns, [])
        return [pod for pod in candidates if selector.matches(pod.meta.labels)]


def build_pools(resources: Resources) -> dict[ObjectRef, Pool]:
    index = PodIndex(resources.pods.values())
    return {ref: _pool(resources.pools[ref], index) for ref in sorted(resources.pools)}


def _pool(pool: InferencePool, index: PodIndex) -> Pool:
    ports = sorted(pool.target_ports)
    endpoints = []
    for pod in index.select(pool):
        ip = pod.pod_ip
        host = f"[{ip}]" if ":" in ip else ip
        endpoints.extend(Endpoint(EndpointKey(ip, port), pod.meta.ref, pod.engine, f"{host}:{port}")
                         for port in ports)
    return Pool(pool.meta.ref, tuple(endpoints), pool.app_protocol)


def pool_statuses(resources: Resources, parents: Mapping[ObjectRef, set[ObjectRef]],
                  controller_name: str) -> dict[ObjectRef, dict[str, Any]]:
    """`status.parents` of every pool: one entry per Gateway with an accepted route referencing it.

    A pool no Gateway references gets an empty list, so the writer drops this controller's old entries.
    """
    out = {}
    for ref in sorted(resources.pools):
        pool = resources.pools[ref]
        gen = pool.meta.generation
        # A picker reference is where a Service lookup (and InvalidExtensionRef) would go; this router
        # schedules natively and never calls it.
        note = EPP_NOT_USED if pool.endpoint_picker_ref is not None else ""
        out[ref] = {"parents": [
            {
                "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw.namespace,
                              "name": gw.name},
                "controllerName": controller_name,
                "conditions": st.conditions(
                    st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen),
                    st.condition(st.RESOLVED_REFS, True, st.R_RESOLVED_REFS, note, gen),
                ),
            }
            for gw in sorted(parents.get(ref, ()))
        ]}
    return out


def build_objectives(resources: Resources) -> dict[ObjectRef, tuple[str, int]]:
    return {ref: (resources.objectives[ref].pool_name, resources.objectives[ref].priority)
            for ref in sorted(resources.objectives)}

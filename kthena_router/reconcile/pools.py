"""InferencePools: their endpoints (Ready pods × target ports), their status parents, and objectives.

Reconcile may run every second with thousands of pods, so pods are indexed once per run by namespace and
label pair; a pool looks up its rarest selector label instead of scanning every pod. Pure: no I/O.

A pool's `kthena.io/scheduler-config` annotation is parsed and validated here, once per reconcile, into
`Pool.scheduler_config`. An invalid one leaves the pool on the router's scheduler: the pool still serves,
so `Accepted` stays True, and the implementation-specific condition `kthena.io/SchedulerConfig` (False,
reason `Invalid`, the YAML path at fault in the message) says what was ignored. A valid one shows as that
condition True with reason `Applied`; pools without the annotation get no such condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kthena_router.api.core import Pod
from kthena_router.api.inferencepool import SCHEDULER_CONFIG_ANNOTATION, InferencePool
from kthena_router.api.meta import GATEWAY_GROUP, Condition, ObjectRef
from kthena_router.reconcile import status as st
from kthena_router.resources import ReconcileOptions, Resources
from kthena_router.scheduling.config import SchedulerConfig, describe_config, parse_scheduler_text
from kthena_router.scheduling.framework import ConfigError
from kthena_router.snapshot import Endpoint, EndpointKey, Pool

EPP_NOT_USED = "endpointPickerRef is not used: kthena-router picks endpoints itself"
# Implementation-specific (domain-prefixed) condition on each parent entry of an annotated pool.
SCHEDULER_CONDITION = "kthena.io/SchedulerConfig"
R_SCHEDULER_APPLIED = "Applied"
R_SCHEDULER_INVALID = "Invalid"


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


def missing_extension_ref(pool: InferencePool, resources: Resources, options: ReconcileOptions | None) -> str | None:
    """Why the pool's endpointPickerRef cannot be resolved, or None. Only checked when the options ask for it
    (Kubernetes mode, where Services are watched): a Service reference must name an existing Service in the
    pool's namespace; any other kind is not resolvable."""
    epp = pool.endpoint_picker_ref
    if epp is None or options is None or not options.check_extension_refs:
        return None
    if epp.group not in ("", "core") or epp.kind != "Service":
        return f"endpointPickerRef {epp.group or 'core'}/{epp.kind} {epp.name!r} is not a Service"
    if ObjectRef(pool.meta.namespace, epp.name) not in resources.services:
        return f"endpointPickerRef names Service {pool.meta.namespace}/{epp.name}, which does not exist"
    return None


def pool_scheduler(pool: InferencePool) -> tuple[SchedulerConfig | None, str | None]:
    """The pool's own scheduler configuration from its annotation, or why it cannot be used.

    (None, None) without the annotation; (config, None) when valid; (None, message) when not."""
    text = pool.scheduler_config
    if text is None:
        return None, None
    try:
        return parse_scheduler_text(text, f"annotation {SCHEDULER_CONFIG_ANNOTATION}"), None
    except ConfigError as exc:
        return None, str(exc)


def scheduler_condition(pool: InferencePool, generation: int) -> Condition | None:
    config, error = pool_scheduler(pool)
    if error is not None:
        return st.condition(SCHEDULER_CONDITION, False, R_SCHEDULER_INVALID,
                            f"{error}; the pool uses the router's scheduler", generation)
    if config is not None:
        return st.condition(SCHEDULER_CONDITION, True, R_SCHEDULER_APPLIED,
                            f"scheduler from annotation {SCHEDULER_CONFIG_ANNOTATION}: {describe_config(config)}",
                            generation)
    return None


def build_pools(resources: Resources, options: ReconcileOptions | None = None) -> dict[ObjectRef, Pool]:
    index = PodIndex(resources.pods.values())
    return {ref: _pool(resources.pools[ref], index, missing_extension_ref(resources.pools[ref], resources, options))
            for ref in sorted(resources.pools)}


def _pool(pool: InferencePool, index: PodIndex, unusable_reason: str | None) -> Pool:
    ports = sorted(pool.target_ports)
    endpoints = []
    for pod in index.select(pool):
        ip = pod.pod_ip
        host = f"[{ip}]" if ":" in ip else ip
        endpoints.extend(Endpoint(EndpointKey(ip, port), pod.meta.ref, pod.engine, f"{host}:{port}")
                         for port in ports)
    config, error = pool_scheduler(pool)
    return Pool(pool.meta.ref, tuple(endpoints), pool.app_protocol, unusable_reason, config, error)


def pool_statuses(resources: Resources, parents: Mapping[ObjectRef, set[ObjectRef]],
                  controller_name: str, options: ReconcileOptions | None = None) -> dict[ObjectRef, dict[str, Any]]:
    """`status.parents` of every pool: one entry per Gateway with an accepted route referencing it.

    A pool no Gateway references gets an empty list, so the writer drops this controller's old entries.
    """
    out = {}
    for ref in sorted(resources.pools):
        pool = resources.pools[ref]
        gen = pool.meta.generation
        # This router schedules natively and never calls a picker; with `check_extension_refs` the named
        # Service must still exist, else ResolvedRefs=False/InvalidExtensionRef.
        missing = missing_extension_ref(pool, resources, options)
        note = EPP_NOT_USED if pool.endpoint_picker_ref is not None else ""
        resolved = st.condition(st.RESOLVED_REFS, True, st.R_RESOLVED_REFS, note, gen) if missing is None \
            else st.condition(st.RESOLVED_REFS, False, st.R_INVALID_EXTENSION_REF, missing, gen)
        scheduler = scheduler_condition(pool, gen) if parents.get(ref) else None
        out[ref] = {"parents": [
            {
                "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw.namespace,
                              "name": gw.name},
                "controllerName": controller_name,
                "conditions": st.conditions(
                    st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen),
                    resolved,
                    *((scheduler,) if scheduler is not None else ()),
                ),
            }
            for gw in sorted(parents.get(ref, ()))
        ]}
    return out


def build_objectives(resources: Resources) -> dict[ObjectRef, tuple[str, int]]:
    return {ref: (resources.objectives[ref].pool_name, resources.objectives[ref].priority)
            for ref in sorted(resources.objectives)}

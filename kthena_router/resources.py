"""The set of parsed resources a config source hands to reconcile, and the options reconcile runs with.

A source (a directory of manifests, or the Kubernetes watch) keeps one `ResourceStore`, applies adds and
deletes to it and asks for a `Resources` view to reconcile. Both sources share this type, so reconcile
never knows where a resource came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kthena_router.api.core import Namespace, Pod, Service
from kthena_router.api.gateway import Gateway, GatewayClass
from kthena_router.api.httproute import HTTPRoute
from kthena_router.api.inferencepool import InferencePool
from kthena_router.api.meta import ObjectRef
from kthena_router.api.objective import InferenceObjective
from kthena_router.api.parse import Resource
from kthena_router.api.referencegrant import ReferenceGrant

CONTROLLER_NAME = "volcano.sh/kthena-router"
GATEWAY_CLASS_NAME = "kthena-router"
# The router marks the `default` Gateway it creates with this label; in a listener conflict such a Gateway
# yields to every Gateway a user made, so a user's Gateway on `--port` (as in Kthena's guide) is served.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kthena-router"


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    controller_name: str = CONTROLLER_NAME
    gateway_class_name: str = GATEWAY_CLASS_NAME
    default_port: int = 8080  # the implied `default` Gateway listens here when no Gateway uses it
    router_namespace: str = "default"  # where the implied `default` Gateway lives (POD_NAMESPACE)
    enable_gateway_api: bool = True
    enable_inference_extension: bool = True
    # Ports whose listeners could not be bound (reported as Programmed=False / PortUnavailable).
    unavailable_ports: frozenset[int] = frozenset()
    # Check that an InferencePool's endpointPickerRef names an existing Service (Kubernetes mode, where
    # Services are watched); a missing one makes the pool unusable (ResolvedRefs=False/InvalidExtensionRef).
    check_extension_refs: bool = False


@dataclass(frozen=True, slots=True)
class Resources:
    """Immutable view of every resource known, keyed by ObjectRef (cluster-scoped kinds: namespace "")."""

    gateway_classes: Mapping[str, GatewayClass] = field(default_factory=dict)
    gateways: Mapping[ObjectRef, Gateway] = field(default_factory=dict)
    http_routes: Mapping[ObjectRef, HTTPRoute] = field(default_factory=dict)
    pools: Mapping[ObjectRef, InferencePool] = field(default_factory=dict)
    objectives: Mapping[ObjectRef, InferenceObjective] = field(default_factory=dict)
    pods: Mapping[ObjectRef, Pod] = field(default_factory=dict)
    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    reference_grants: Mapping[ObjectRef, ReferenceGrant] = field(default_factory=dict)
    services: Mapping[ObjectRef, Service] = field(default_factory=dict)  # only read with check_extension_refs


_FIELD_BY_KIND = {
    "GatewayClass": "gateway_classes",
    "Gateway": "gateways",
    "HTTPRoute": "http_routes",
    "InferencePool": "pools",
    "InferenceObjective": "objectives",
    "Pod": "pods",
    "Namespace": "namespaces",
    "ReferenceGrant": "reference_grants",
    "Service": "services",
}


def _key(resource: Resource) -> ObjectRef | str:
    if resource.kind in ("GatewayClass", "Namespace"):
        return resource.meta.name
    return resource.meta.ref


class ResourceStore:
    """A mutable index of resources by kind, owned by one config source."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict] = {name: {} for name in _FIELD_BY_KIND.values()}

    def put(self, resource: Resource) -> None:
        self._by_kind[_FIELD_BY_KIND[resource.kind]][_key(resource)] = resource

    def delete(self, kind: str, key: ObjectRef | str) -> None:
        self._by_kind[_FIELD_BY_KIND[kind]].pop(key, None)

    def get(self, kind: str, key: ObjectRef | str) -> Resource | None:
        return self._by_kind[_FIELD_BY_KIND[kind]].get(key)

    def replace_kind(self, kind: str, resources: list[Resource]) -> None:
        self._by_kind[_FIELD_BY_KIND[kind]] = {_key(r): r for r in resources}

    def view(self) -> Resources:
        return Resources(**{name: dict(items) for name, items in self._by_kind.items()})

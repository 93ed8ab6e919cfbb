"""Turn one raw manifest into its typed resource, by apiVersion group and kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kthena_router.api.core import Namespace, Pod, Service
from kthena_router.api.gateway import Gateway, GatewayClass
from kthena_router.api.httproute import HTTPRoute
from kthena_router.api.inferencepool import InferencePool
from kthena_router.api.meta import GATEWAY_GROUP, INFERENCE_GROUP, INFERENCE_X_GROUP, InvalidResource
from kthena_router.api.objective import InferenceObjective
from kthena_router.api.referencegrant import ReferenceGrant

Resource = (GatewayClass | Gateway | HTTPRoute | InferencePool | InferenceObjective | Pod | Namespace | ReferenceGrant
            | Service)

# (group, kind) -> type; the empty group is the core API.
KINDS: dict[tuple[str, str], type] = {
    (GATEWAY_GROUP, "GatewayClass"): GatewayClass,
    (GATEWAY_GROUP, "Gateway"): Gateway,
    (GATEWAY_GROUP, "HTTPRoute"): HTTPRoute,
    (GATEWAY_GROUP, "ReferenceGrant"): ReferenceGrant,
    (INFERENCE_GROUP, "InferencePool"): InferencePool,
    (INFERENCE_X_GROUP, "InferencePool"): InferencePool,
    (INFERENCE_X_GROUP, "InferenceObjective"): InferenceObjective,
    ("", "Pod"): Pod,
    ("", "Namespace"): Namespace,
    ("", "Service"): Service,
}

GATEWAY_API_KINDS = frozenset({GatewayClass, Gateway, HTTPRoute, ReferenceGrant})
INFERENCE_KINDS = frozenset({InferencePool, InferenceObjective})


class UnknownKind(Exception):
    """A manifest of a kind this router does not read."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(f"{api_version} {kind}")


def parse_resource(raw: Mapping[str, Any]) -> Resource:
    """Parse one manifest. Raises UnknownKind for kinds this router ignores, InvalidResource when invalid."""
    if not isinstance(raw, Mapping):
        raise InvalidResource("?", None, "", f"a manifest must be a mapping, got {type(raw).__name__}")
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise InvalidResource(str(kind or "?"), None, "apiVersion", "required")
    if not isinstance(kind, str) or not kind:
        raise InvalidResource("?", None, "kind", "required")
    group = api_version.rpartition("/")[0]
    cls = KINDS.get((group, kind))
    if cls is None:
        raise UnknownKind(api_version, kind)
    return cls.from_dict(raw)

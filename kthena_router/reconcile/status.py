"""Status shapes reconcile produces, and the condition vocabulary (types, reasons) they are built from.

Every status here is the exact Kubernetes `status` dict of its object, without lastTransitionTime: the
status writer adds clocks and merges with what other controllers wrote. Nothing here knows about I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kthena_router.api.meta import Condition, ObjectRef

# Condition types.
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
SUPPORTED_VERSION = "SupportedVersion"
PARTIALLY_INVALID = "PartiallyInvalid"

# Reasons (Gateway API and Inference Extension constants).
R_ACCEPTED = "Accepted"
R_PROGRAMMED = "Programmed"
R_RESOLVED_REFS = "ResolvedRefs"
R_SUPPORTED_VERSION = "SupportedVersion"
R_INVALID = "Invalid"
R_LISTENERS_NOT_VALID = "ListenersNotValid"
R_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
R_PORT_UNAVAILABLE = "PortUnavailable"
R_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
R_HOSTNAME_CONFLICT = "HostnameConflict"
R_NO_CONFLICTS = "NoConflicts"
R_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
R_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
R_NO_MATCHING_PARENT = "NoMatchingParent"
R_UNSUPPORTED_VALUE = "UnsupportedValue"
R_BACKEND_NOT_FOUND = "BackendNotFound"
R_INVALID_KIND = "InvalidKind"
R_REF_NOT_PERMITTED = "RefNotPermitted"
R_INVALID_EXTENSION_REF = "InvalidExtensionRef"

MAX_MESSAGE = 32768  # metav1.Condition message limit


def condition(type_: str, ok: bool, reason: str, message: str = "", generation: int = 0) -> Condition:
    """A condition with status "True" when `ok`, else "False"; long messages are truncated."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return Condition(type_, "True" if ok else "False", reason, message, generation)


def conditions(*items: Condition) -> list[dict[str, Any]]:
    return [c.to_dict() for c in items]


def ref_key(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}"


@dataclass(frozen=True, slots=True)
class Statuses:
    """What reconcile wants written back, one Kubernetes `status` dict per object this controller manages.

    `http_routes` entries carry only the parents this controller owns; `pools` entries list the Gateways
    currently associated with the pool (an empty list means none: the writer removes this controller's
    stale entries). v1alpha2 pools get the same shape; the writer renames `parents` to `parent`.
    """

    gateway_classes: Mapping[str, dict] = field(default_factory=dict)
    gateways: Mapping[ObjectRef, dict] = field(default_factory=dict)
    http_routes: Mapping[ObjectRef, dict] = field(default_factory=dict)
    pools: Mapping[ObjectRef, dict] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, dict]]:
        """Plain data keyed by kind and "namespace/name", in sorted order."""
        return {
            "gatewayclasses": {name: self.gateway_classes[name] for name in sorted(self.gateway_classes)},
            "gateways": {ref_key(ref): self.gateways[ref] for ref in sorted(self.gateways)},
            "httproutes": {ref_key(ref): self.http_routes[ref] for ref in sorted(self.http_routes)},
            "inferencepools": {ref_key(ref): self.pools[ref] for ref in sorted(self.pools)},
        }

"""GatewayClass and Gateway (`gateway.networking.k8s.io/v1`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kthena_router.api.hostnames import check_hostname
from kthena_router.api.meta import (
    GATEWAY_GROUP,
    FieldReader,
    LabelSelector,
    Metadata,
    parse_metadata,
)

FromNamespaces = Literal["All", "Same", "Selector"]
PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")


@dataclass(frozen=True, slots=True)
class GatewayClass:
    meta: Metadata
    controller_name: str

    kind = "GatewayClass"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GatewayClass:
        meta = parse_metadata(cls.kind, raw, namespaced=False)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        return cls(meta, r.string(spec.get("controllerName"), "spec.controllerName", required=True))


@dataclass(frozen=True, slots=True)
class RouteGroupKind:
    group: str
    kind: str


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str | None
    namespaces_from: FromNamespaces
    namespace_selector: LabelSelector | None
    kinds: tuple[RouteGroupKind, ...]  # empty: the protocol's default kinds


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: Metadata
    gateway_class_name: str
    listeners: tuple[Listener, ...]
    addresses: tuple[str, ...] = ()

    kind = "Gateway"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Gateway:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        class_name = r.string(spec.get("gatewayClassName"), "spec.gatewayClassName", required=True)
        listeners = []
        names: set[str] = set()
        raw_listeners = r.seq(spec.get("listeners"), "spec.listeners", required=True, max_items=64)
        if not raw_listeners:
            raise r.fail("spec.listeners", "at least one listener is required")
        for i, item in enumerate(raw_listeners):
            listener = _parse_listener(r, item, f"spec.listeners[{i}]")
            if listener.name in names:
                raise r.fail(f"spec.listeners[{i}].name", f"duplicate listener name {listener.name!r}")
            names.add(listener.name)
            listeners.append(listener)
        addresses = []
        for i, item in enumerate(r.seq(spec.get("addresses"), "spec.addresses", max_items=16)):
            item = r.mapping(item, f"spec.addresses[{i}]")
            addresses.append(r.string(item.get("value"), f"spec.addresses[{i}].value", required=True))
        return cls(meta, class_name, tuple(listeners), tuple(addresses))


def _parse_listener(r: FieldReader, raw: Any, path: str) -> Listener:
    raw = r.mapping(raw, path)
    name = r.string(raw.get("name"), f"{path}.name", required=True)
    port = r.integer(raw.get("port"), f"{path}.port", required=True, minimum=1, maximum=65535)
    protocol = r.string(raw.get("protocol"), f"{path}.protocol", required=True)
    hostname = r.optional_string(raw.get("hostname"), f"{path}.hostname")
    if hostname is not None:
        problem = check_hostname(hostname)
        if problem:
            raise r.fail(f"{path}.hostname", problem)
        hostname = hostname.lower()
    allowed = r.mapping(raw.get("allowedRoutes"), f"{path}.allowedRoutes")
    namespaces = r.mapping(allowed.get("namespaces"), f"{path}.allowedRoutes.namespaces")
    from_ = r.enum(namespaces.get("from"), f"{path}.allowedRoutes.namespaces.from",
                   ("All", "Same", "Selector"), default="Same")
    selector = None
    if from_ == "Selector":
        if namespaces.get("selector") is None:
            raise r.fail(f"{path}.allowedRoutes.namespaces.selector", "required when from is Selector")
        selector = r.label_selector(namespaces.get("selector"), f"{path}.allowedRoutes.namespaces.selector")
    kinds = []
    for j, item in enumerate(r.seq(allowed.get("kinds"), f"{path}.allowedRoutes.kinds", max_items=8)):
        item = r.mapping(item, f"{path}.allowedRoutes.kinds[{j}]")
        kinds.append(RouteGroupKind(
            r.string(item.get("group"), f"{path}.allowedRoutes.kinds[{j}].group", default=GATEWAY_GROUP),
            r.string(item.get("kind"), f"{path}.allowedRoutes.kinds[{j}].kind", required=True),
        ))
    return Listener(name, port, protocol, hostname, from_, selector, tuple(kinds))

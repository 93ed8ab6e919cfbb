"""GatewayClasses and Gateways this controller handles, their listeners' validity, and the port tables.

First step of reconcile: pick the classes whose controllerName is ours (implying `kthena-router` when it is
absent), the Gateways of those classes (implying the `default` Gateway when no handled Gateway listens on
the default port), and judge every listener: protocol, route kinds, port availability, and hostname
conflicts between listeners sharing a port. Routes attach to the resulting `ListenerState`s (see
`routes.py`); finally the served listeners become the Snapshot's `PortTable`s. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kthena_router.api.core import Namespace
from kthena_router.api.gateway import Gateway, GatewayClass, Listener, RouteGroupKind
from kthena_router.api.meta import GATEWAY_GROUP, Condition, Metadata, ObjectRef
from kthena_router.reconcile import status as st
from kthena_router.resources import MANAGED_BY_LABEL, MANAGED_BY_VALUE, ReconcileOptions, Resources
from kthena_router.routing.table import RouteEntry, compile_routes
from kthena_router.snapshot import ListenerRoutes, PortTable

DEFAULT_GATEWAY_NAME = "default"
DEFAULT_LISTENER_NAME = "default"
HTTP_ROUTE_KIND = RouteGroupKind(GATEWAY_GROUP, "HTTPRoute")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(slots=True)
class ListenerState:
    """One listener of a handled Gateway: its verdicts, and the routes that attach to it."""

    gateway: Gateway
    listener: Listener
    index: int  # position in spec.listeners
    supported_kinds: tuple[RouteGroupKind, ...]
    accepted: Condition
    resolved_refs: Condition
    conflicted: Condition
    programmed: Condition | None = None  # decided once conflicts are known
    entries: list[RouteEntry] = field(default_factory=list)  # routes served on it (accepted, attached)
    attached_routes: int = 0

    @property
    def ref(self) -> ObjectRef:
        return self.gateway.meta.ref

    @property
    def allows_http_routes(self) -> bool:
        return HTTP_ROUTE_KIND in self.supported_kinds

    @property
    def servable(self) -> bool:
        """Accepted, with a route kind to serve: it may take a socket unless a conflict removes it."""
        return self.accepted.status == "True" and self.allows_http_routes

    @property
    def served(self) -> bool:
        return self.programmed is not None and self.programmed.status == "True"

    @property
    def valid(self) -> bool:
        return (self.accepted.status == "True" and self.resolved_refs.status == "True"
                and self.conflicted.status == "False")

    def allows_namespace(self, namespace: str, namespaces: Mapping[str, Namespace]) -> bool:
        """allowedRoutes.namespaces: Same (the Gateway's namespace), All, or Selector on Namespace labels."""
        from_ = self.listener.namespaces_from
        if from_ == "All":
            return True
        if from_ == "Same":
            return namespace == self.gateway.meta.namespace
        selector = self.listener.namespace_selector
        if selector is None:
            return False
        ns = namespaces.get(namespace)
        labels = ns.meta.labels if ns is not None else {NAMESPACE_NAME_LABEL: namespace}
        return selector.matches(labels)


def handled_classes(resources: Resources, options: ReconcileOptions) -> dict[str, GatewayClass]:
    """GatewayClasses whose controllerName is ours; ours by name is implied when it does not exist."""
    classes = {name: gc for name, gc in resources.gateway_classes.items()
               if gc.controller_name == options.controller_name}
    if options.gateway_class_name not in resources.gateway_classes:
        classes[options.gateway_class_name] = GatewayClass(
            Metadata("", options.gateway_class_name), options.controller_name)
    return classes


def gateway_class_status(gc: GatewayClass) -> dict[str, Any]:
    gen = gc.meta.generation
    return {"conditions": st.conditions(
        st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen),
        st.condition(st.SUPPORTED_VERSION, True, st.R_SUPPORTED_VERSION, "", gen),
    )}


def handled_gateways(resources: Resources, options: ReconcileOptions,
                     classes: Mapping[str, GatewayClass]) -> dict[ObjectRef, Gateway]:
    """Gateways of a handled class, plus the implied `default` Gateway when it applies.

    The `default` Gateway (one HTTP listener on the default port, routes from all namespaces) is implied
    when no handled Gateway listens on that port and no Gateway of that name exists already.
    """
    gateways = {ref: gw for ref, gw in resources.gateways.items() if gw.gateway_class_name in classes}
    default_ref = ObjectRef(options.router_namespace, DEFAULT_GATEWAY_NAME)
    port_taken = any(listener.port == options.default_port
                     for gw in gateways.values() for listener in gw.listeners)
    if not port_taken and default_ref not in resources.gateways:
        gateways[default_ref] = Gateway(
            Metadata(default_ref.namespace, default_ref.name),
            options.gateway_class_name,
            (Listener(DEFAULT_LISTENER_NAME, options.default_port, "HTTP", None, "All", None, ()),),
        )
    return gateways


def _precedence(gw: Gateway) -> tuple[bool, str, str, str]:
    """Gateways users made beat the one the router created; then older Gateways win conflicts, then
    "namespace/name" order (an empty timestamp sorts first)."""
    router_made = gw.meta.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
    return (router_made, gw.meta.creation_timestamp, gw.meta.namespace, gw.meta.name)


def evaluate_listeners(gateways: Iterable[Gateway],
                       options: ReconcileOptions) -> dict[ObjectRef, list[ListenerState]]:
    """Judge every listener of every handled Gateway, including conflicts between Gateways."""
    states: dict[ObjectRef, list[ListenerState]] = {}
    for gw in sorted(gateways, key=_precedence):
        states[gw.meta.ref] = [_judge(gw, listener, i, options) for i, listener in enumerate(gw.listeners)]
    _mark_conflicts([s for gw_states in states.values() for s in gw_states])
    for gw_states in states.values():
        for s in gw_states:
            if s.programmed is None:
                s.programmed = _programmed(s)
    return states


def _judge(gw: Gateway, listener: Listener, index: int, options: ReconcileOptions) -> ListenerState:
    gen = gw.meta.generation
    resolved = st.condition(st.RESOLVED_REFS, True, st.R_RESOLVED_REFS, "", gen)
    no_conflict = st.condition(st.CONFLICTED, False, st.R_NO_CONFLICTS, "", gen)
    if listener.protocol != "HTTP":
        accepted = st.condition(
            st.ACCEPTED, False, st.R_UNSUPPORTED_PROTOCOL,
            f"protocol {listener.protocol} is not supported: kthena-router serves HTTP listeners only", gen)
        return ListenerState(gw, listener, index, (), accepted, resolved, no_conflict)
    if listener.kinds:
        supported = tuple(dict.fromkeys(k for k in listener.kinds if k == HTTP_ROUTE_KIND))
        invalid = [f"{k.group}/{k.kind}" if k.group else k.kind for k in listener.kinds if k != HTTP_ROUTE_KIND]
        if invalid:
            resolved = st.condition(
                st.RESOLVED_REFS, False, st.R_INVALID_ROUTE_KINDS,
                f"route kinds not supported on an HTTP listener: {', '.join(invalid)} "
                f"(supported: {GATEWAY_GROUP}/HTTPRoute)", gen)
    else:
        supported = (HTTP_ROUTE_KIND,)
    if listener.port in options.unavailable_ports:
        accepted = st.condition(st.ACCEPTED, False, st.R_PORT_UNAVAILABLE, "port unavailable", gen)
    else:
        accepted = st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen)
    return ListenerState(gw, listener, index, supported, accepted, resolved, no_conflict)


def _mark_conflicts(states: list[ListenerState]) -> None:
    """Two servable listeners with the same port and hostname: the first (oldest Gateway, then
    "namespace/name", then listener order) keeps it; the others are Conflicted and not served."""
    owner: dict[tuple[int, str | None], ListenerState] = {}
    for s in states:  # already in precedence order
        if not s.servable:
            continue
        key = (s.listener.port, s.listener.hostname)
        first = owner.setdefault(key, s)
        if first is s:
            continue
        gen = s.gateway.meta.generation
        host = f"hostname {s.listener.hostname}" if s.listener.hostname else "no hostname"
        message = (f"port {s.listener.port} with {host} is already used by listener "
                   f"{first.listener.name} of Gateway {first.ref}")
        s.conflicted = st.condition(st.CONFLICTED, True, st.R_HOSTNAME_CONFLICT, message, gen)
        s.programmed = st.condition(st.PROGRAMMED, False, st.R_INVALID, message, gen)


def _programmed(s: ListenerState) -> Condition:
    gen = s.gateway.meta.generation
    if s.accepted.status != "True":
        return st.condition(st.PROGRAMMED, False, st.R_INVALID, s.accepted.message, gen)
    if not s.allows_http_routes:
        return st.condition(st.PROGRAMMED, False, st.R_INVALID, "the listener allows no supported route kind",
                            gen)
    return st.condition(st.PROGRAMMED, True, st.R_PROGRAMMED, "", gen)


def gateway_status(gw: Gateway, states: list[ListenerState]) -> dict[str, Any]:
    """Gateway Accepted (ListenersNotValid when some listener is not) and Programmed, plus listeners."""
    gen = gw.meta.generation
    invalid = [s.listener.name for s in states if not s.valid]
    any_accepted = any(s.accepted.status == "True" for s in states)
    if not invalid:
        accepted = st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen)
    else:
        accepted = st.condition(st.ACCEPTED, any_accepted, st.R_LISTENERS_NOT_VALID,
                                f"invalid listeners: {', '.join(invalid)}", gen)
    if any(s.served for s in states):
        programmed = st.condition(st.PROGRAMMED, True, st.R_PROGRAMMED, "", gen)
    else:
        programmed = st.condition(st.PROGRAMMED, False, st.R_INVALID, "no listener is programmed", gen)
    listeners = []
    for s in states:
        assert s.programmed is not None  # evaluate_listeners decided it
        listeners.append({
            "name": s.listener.name,
            "supportedKinds": [{"group": k.group, "kind": k.kind} for k in s.supported_kinds],
            "attachedRoutes": s.attached_routes,
            "conditions": st.conditions(s.accepted, s.programmed, s.resolved_refs, s.conflicted),
        })
    return {
        "conditions": st.conditions(accepted, programmed),
        "listeners": listeners,
        "addresses": [_address(value) for value in gw.addresses],
    }


def _address(value: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return {"type": "Hostname", "value": value}
    return {"type": "IPAddress", "value": value}


def port_tables(states: Iterable[ListenerState]) -> dict[int, PortTable]:
    """One PortTable per port with a served listener; listeners are selected by hostname."""
    by_port: dict[int, list[ListenerRoutes]] = {}
    for s in states:
        if not s.served:
            continue
        entries = sorted(s.entries, key=lambda e: e.route.meta.ref)
        by_port.setdefault(s.listener.port, []).append(ListenerRoutes(
            s.ref, s.listener.name, s.listener.port, s.listener.hostname, compile_routes(entries)))
    tables = {}
    for port in sorted(by_port):
        exact: dict[str, ListenerRoutes] = {}
        wildcard: list[tuple[str, ListenerRoutes]] = []
        catch_all = None
        for lr in by_port[port]:
            if lr.hostname is None:
                catch_all = lr
            elif lr.hostname.startswith("*."):
                wildcard.append((lr.hostname[1:], lr))
            else:
                exact[lr.hostname] = lr
        wildcard.sort(key=lambda item: (-len(item[0]), item[0]))
        tables[port] = PortTable(port, dict(sorted(exact.items())), tuple(wildcard), catch_all)
    return tables

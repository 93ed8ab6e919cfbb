"""HTTPRoutes: resolve rules and backendRefs, attach to listeners per parentRef, and write route status.

Second step of reconcile, after `gateways.py` judged the listeners. For each route, `resolve_route` turns
every rule into what the data plane needs (backends resolved to InferencePools, filters split by kind) and
collects ResolvedRefs problems; `attach_route` walks the parentRefs, attaches the route to the listeners
that accept it (adding a `RouteEntry` per listener) and builds the route's `status.parents`. Pure: no I/O.

Decisions where the spec leaves room:
- Backends: only InferencePools (`inference.networking.k8s.io`, or `inference.networking.x-k8s.io` for
  v1alpha2 pools) are resolved; a Service, or any other kind, is `InvalidKind`. With the inference
  extension disabled, InferencePool refs are `InvalidKind` too (the kind is not served at all). A
  cross-namespace ref is checked against ReferenceGrants before the target's existence, so a missing
  grant says `RefNotPermitted` without revealing what exists in the other namespace.
- An invalid backend keeps its weight: its share of requests gets a 500. Weight-0 backends take no traffic
  and are dropped (but still resolved for status).
- A rule with a filter this router does not implement (RequestMirror, CORS, ExternalAuth, ExtensionRef,
  or a URLRewrite/RequestRedirect on a backendRef) is invalid: it forwards nothing, and requests it
  matches get a 500 instead of falling through to another rule (a filter must not be skipped). When some
  rules are invalid the route is `Accepted` with `PartiallyInvalid` ("Dropped Rule ..."); when all are,
  it is `Accepted=False/UnsupportedValue` and is not attached.
- A parentRef to a Gateway that does not exist gets `Accepted=False/NoMatchingParent`, unless the route
  also names an existing Gateway of another controller (the missing one may be that controller's). A
  parentRef to another controller's Gateway, or to a kind other than Gateway, gets no entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kthena_router.api.gateway import Gateway
from kthena_router.api.hostnames import intersect
from kthena_router.api.httproute import (
    BackendRef,
    Filter,
    HeaderModifier,
    HTTPRoute,
    ParentRef,
    RequestRedirect,
    Rule,
    URLRewrite,
)
from kthena_router.api.meta import GATEWAY_GROUP, INFERENCE_GROUP, INFERENCE_X_GROUP, Condition, ObjectRef
from kthena_router.api.referencegrant import ReferenceGrant
from kthena_router.reconcile import status as st
from kthena_router.reconcile.gateways import ListenerState
from kthena_router.resources import ReconcileOptions, Resources
from kthena_router.routing.table import RouteEntry
from kthena_router.snapshot import Backend, CompiledRule

POOL_KIND = "InferencePool"
POOL_GROUPS = (INFERENCE_GROUP, INFERENCE_X_GROUP)


@dataclass(frozen=True, slots=True)
class ResolvedRule:
    """One rule with its backends resolved and filters sorted out; listener-independent."""

    backends: tuple[Backend, ...]
    pools: frozenset[ObjectRef]  # InferencePools its backendRefs resolved to (any weight)
    request_headers: HeaderModifier | None
    response_headers: HeaderModifier | None
    url_rewrite: URLRewrite | None
    redirect: RequestRedirect | None
    error: str | None  # set: requests matching this rule get a 500 with this message
    invalid: str | None  # set: the rule is dropped (an unsupported filter), for PartiallyInvalid


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    route: HTTPRoute
    rules: tuple[ResolvedRule, ...]
    resolved_refs: Condition
    unsupported: Condition | None  # Accepted=False/UnsupportedValue: every rule is invalid
    partially_invalid: Condition | None

    @property
    def pools(self) -> frozenset[ObjectRef]:
        """Pools referenced by the rules that are served."""
        return frozenset().union(*(r.pools for r in self.rules if r.invalid is None))


def grants_by_namespace(resources: Resources) -> dict[str, list[ReferenceGrant]]:
    out: dict[str, list[ReferenceGrant]] = {}
    for ref in sorted(resources.reference_grants):
        out.setdefault(ref.namespace, []).append(resources.reference_grants[ref])
    return out


# --- rules and backends ----------------------------------------------------------------------------------


def resolve_route(route: HTTPRoute, resources: Resources, options: ReconcileOptions,
                  grants: Mapping[str, list[ReferenceGrant]]) -> ResolvedRoute:
    gen = route.meta.generation
    failures: list[tuple[str, str]] = []  # (reason, message) for ResolvedRefs
    rules = tuple(_resolve_rule(route, i, rule, resources, options, grants, failures)
                  for i, rule in enumerate(route.rules))
    if failures:
        resolved = st.condition(st.RESOLVED_REFS, False, failures[0][0], "; ".join(m for _, m in failures), gen)
    else:
        resolved = st.condition(st.RESOLVED_REFS, True, st.R_RESOLVED_REFS, "", gen)
    invalid = [(i, r.invalid) for i, r in enumerate(rules) if r.invalid is not None]
    unsupported = partial = None
    if invalid and len(invalid) == len(rules):
        unsupported = st.condition(st.ACCEPTED, False, st.R_UNSUPPORTED_VALUE,
                                   "all rules are invalid: " + "; ".join(f"rule {i}: {why}" for i, why in invalid),
                                   gen)
    elif invalid:
        partial = st.condition(
            st.PARTIALLY_INVALID, True, st.R_UNSUPPORTED_VALUE,
            "; ".join(f"Dropped Rule {i}: {why}" for i, why in invalid)
            + " (requests matching a dropped rule get a 500)", gen)
    return ResolvedRoute(route, rules, resolved, unsupported, partial)


def _resolve_rule(route: HTTPRoute, index: int, rule: Rule, resources: Resources, options: ReconcileOptions,
                  grants: Mapping[str, list[ReferenceGrant]], failures: list[tuple[str, str]]) -> ResolvedRule:
    unsupported: list[str] = []
    request_headers, response_headers, rewrite, redirect = _split_filters(rule.filters, unsupported, "")
    backends: list[Backend] = []
    pools: set[ObjectRef] = set()
    for j, ref in enumerate(rule.backend_refs):
        pool, reason, message = _resolve_backend(route, ref, resources, options, grants)
        if reason is not None:
            failures.append((reason, f"rule {index} backendRef {j}: {message}"))
        else:
            assert pool is not None
            pools.add(pool)
        b_req, b_resp, b_rewrite, b_redirect = _split_filters(ref.filters, unsupported, f"backendRef {j} ")
        if b_rewrite is not None:
            unsupported.append(f"backendRef {j} filter URLRewrite is not supported")
        if b_redirect is not None:
            unsupported.append(f"backendRef {j} filter RequestRedirect is not supported")
        if ref.weight == 0:
            continue
        backends.append(Backend(ref.weight, pool, message if reason is not None else None, b_req, b_resp))
    invalid = "; ".join(unsupported) if unsupported else None
    name = f"HTTPRoute {route.meta.ref} rule {index}"
    if invalid is not None:
        error: str | None = f"{name} is not served: {invalid}"
    elif not rule.backend_refs and redirect is None:
        error = f"{name} has no backendRefs"
    elif rule.backend_refs and not backends:
        error = f"{name}: every backendRef has weight 0"
    else:
        error = None
    return ResolvedRule(tuple(backends), frozenset(pools), request_headers, response_headers, rewrite, redirect,
                        error, invalid)


def _split_filters(filters: tuple[Filter, ...], unsupported: list[str], where: str) -> tuple[
        HeaderModifier | None, HeaderModifier | None, URLRewrite | None, RequestRedirect | None]:
    request_headers = response_headers = rewrite = redirect = None
    for f in filters:
        if f.type == "RequestHeaderModifier":
            request_headers = f.request_header_modifier
        elif f.type == "ResponseHeaderModifier":
            response_headers = f.response_header_modifier
        elif f.type == "URLRewrite":
            rewrite = f.url_rewrite
        elif f.type == "RequestRedirect":
            redirect = f.request_redirect
        else:
            unsupported.append(f"{where}filter {f.type} is not supported")
    return request_headers, response_headers, rewrite, redirect


def _resolve_backend(route: HTTPRoute, ref: BackendRef, resources: Resources, options: ReconcileOptions,
                     grants: Mapping[str, list[ReferenceGrant]]) -> tuple[ObjectRef | None, str | None, str]:
    """(pool, None, "") when the ref resolves, else (None, reason, message)."""
    if ref.kind != POOL_KIND or ref.group not in POOL_GROUPS:
        if ref.group == "" and ref.kind == "Service":
            return None, st.R_INVALID_KIND, (f"Service {ref.namespace}/{ref.name}: Service backends are not "
                                             f"supported; kthena-router forwards to InferencePools only")
        if ref.kind == POOL_KIND:
            return None, st.R_INVALID_KIND, (f"InferencePool {ref.namespace}/{ref.name}: group {ref.group!r} "
                                             f"is not an InferencePool group (use {INFERENCE_GROUP})")
        kind = f"{ref.group}/{ref.kind}" if ref.group else ref.kind
        return None, st.R_INVALID_KIND, (f"{kind} {ref.namespace}/{ref.name}: unsupported backend kind "
                                         f"(use group {INFERENCE_GROUP}, kind {POOL_KIND})")
    target = ObjectRef(ref.namespace, ref.name)
    if not options.enable_inference_extension:
        return None, st.R_INVALID_KIND, (f"InferencePool {target}: InferencePool backends are disabled "
                                         f"(the inference extension is off)")
    route_ns = route.meta.namespace
    if ref.namespace != route_ns and not any(
            g.permits(GATEWAY_GROUP, "HTTPRoute", route_ns, ref.group, ref.kind, ref.name)
            for g in grants.get(ref.namespace, ())):
        return None, st.R_REF_NOT_PERMITTED, (f"InferencePool {target}: no ReferenceGrant in namespace "
                                              f"{ref.namespace} allows HTTPRoutes from namespace {route_ns}")
    pool = resources.pools.get(target)
    if pool is None:
        return None, st.R_BACKEND_NOT_FOUND, f"InferencePool {target} not found"
    group = pool.api_version.rpartition("/")[0]
    if group != ref.group:
        return None, st.R_BACKEND_NOT_FOUND, (f"InferencePool {target} not found in group {ref.group} "
                                              f"(it exists in group {group})")
    return target, None, ""


# --- attachment and status -------------------------------------------------------------------------------


@dataclass(slots=True)
class Attachment:
    """What one parentRef came to: the listeners it attached to (with effective hostnames) and its status."""

    parent: ParentRef
    gateway: ObjectRef
    listeners: list[tuple[ListenerState, tuple[str, ...]]]
    accepted: Condition


def attach_route(resolved: ResolvedRoute, handled: Mapping[ObjectRef, Gateway],
                 listeners: Mapping[ObjectRef, list[ListenerState]], resources: Resources) -> list[Attachment]:
    """Evaluate every parentRef this controller owns, in spec order."""
    route = resolved.route
    foreign = any(
        p.group == GATEWAY_GROUP and p.kind == "Gateway"
        and ObjectRef(p.namespace, p.name) in resources.gateways
        and ObjectRef(p.namespace, p.name) not in handled
        for p in route.parent_refs)
    out = []
    for parent in route.parent_refs:
        if parent.group != GATEWAY_GROUP or parent.kind != "Gateway":
            continue
        gw_ref = ObjectRef(parent.namespace, parent.name)
        if gw_ref not in handled:
            if gw_ref in resources.gateways or foreign:
                continue
            accepted = st.condition(st.ACCEPTED, False, st.R_NO_MATCHING_PARENT,
                                    f"Gateway {gw_ref} does not exist", route.meta.generation)
            out.append(Attachment(parent, gw_ref, [], accepted))
            continue
        out.append(_attach_parent(resolved, parent, gw_ref, listeners.get(gw_ref, []), resources))
    return out


def _attach_parent(resolved: ResolvedRoute, parent: ParentRef, gw_ref: ObjectRef, states: list[ListenerState],
                   resources: Resources) -> Attachment:
    route = resolved.route
    gen = route.meta.generation
    candidates = [s for s in states
                  if (parent.section_name is None or s.listener.name == parent.section_name)
                  and (parent.port is None or s.listener.port == parent.port)]
    if not candidates:
        wanted = " ".join(filter(None, (
            f"named {parent.section_name}" if parent.section_name is not None else "",
            f"on port {parent.port}" if parent.port is not None else "")))
        return Attachment(parent, gw_ref, [], st.condition(
            st.ACCEPTED, False, st.R_NO_MATCHING_PARENT, f"Gateway {gw_ref} has no listener {wanted}", gen))
    allowed, refused = [], []
    for s in candidates:
        if not s.allows_http_routes:
            refused.append(f"listener {s.listener.name} does not allow HTTPRoutes")
        elif not s.allows_namespace(route.meta.namespace, resources.namespaces):
            refused.append(f"listener {s.listener.name} does not allow routes from namespace "
                           f"{route.meta.namespace} (from: {s.listener.namespaces_from})")
        else:
            allowed.append(s)
    if not allowed:
        return Attachment(parent, gw_ref, [], st.condition(
            st.ACCEPTED, False, st.R_NOT_ALLOWED_BY_LISTENERS, "; ".join(refused), gen))
    attached = []
    for s in allowed:
        hostnames = effective_hostnames(s.listener.hostname, route.hostnames)
        if hostnames is not None:
            attached.append((s, hostnames))
    if not attached:
        names = ", ".join(f"{s.listener.name} ({s.listener.hostname})" for s in allowed)
        return Attachment(parent, gw_ref, [], st.condition(
            st.ACCEPTED, False, st.R_NO_MATCHING_LISTENER_HOSTNAME,
            f"no route hostname ({', '.join(route.hostnames)}) matches listener {names}", gen))
    if resolved.unsupported is not None:
        return Attachment(parent, gw_ref, [], resolved.unsupported)
    return Attachment(parent, gw_ref, attached, st.condition(st.ACCEPTED, True, st.R_ACCEPTED, "", gen))


def effective_hostnames(listener_hostname: str | None, route_hostnames: tuple[str, ...]) -> tuple[str, ...] | None:
    """The hostnames a route serves on a listener: () for any host the listener takes, None for none.

    Route hostnames that do not intersect the listener's are ignored; each one that does is narrowed to
    the more specific of the two.
    """
    if not route_hostnames or listener_hostname is None:
        return route_hostnames
    out = tuple(dict.fromkeys(h for h in (intersect(listener_hostname, r) for r in route_hostnames)
                              if h is not None))
    return out or None


def compile_entry(resolved: ResolvedRoute, state: ListenerState, hostnames: tuple[str, ...]) -> RouteEntry:
    """The route's rules bound to one listener, for the listener's RouteTable."""
    route = resolved.route
    rules = tuple(
        CompiledRule(
            route=route.meta.ref,
            rule_index=i,
            gateway=state.ref,
            listener=state.listener.name,
            backends=r.backends,
            request_headers=r.request_headers,
            response_headers=r.response_headers,
            url_rewrite=r.url_rewrite,
            redirect=r.redirect,
            timeouts=rule.timeouts,
            error=r.error,
        )
        for i, (rule, r) in enumerate(zip(route.rules, resolved.rules, strict=True)))
    return RouteEntry(route, hostnames, rules)


def parent_ref_dict(parent: ParentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"group": parent.group, "kind": parent.kind, "namespace": parent.namespace,
                           "name": parent.name}
    if parent.section_name is not None:
        out["sectionName"] = parent.section_name
    if parent.port is not None:
        out["port"] = parent.port
    return out


def route_status(resolved: ResolvedRoute, attachments: list[Attachment], controller_name: str) -> dict[str, Any]:
    parents = []
    for a in attachments:
        conds = [a.accepted, resolved.resolved_refs]
        if a.accepted.status == "True" and resolved.partially_invalid is not None:
            conds.append(resolved.partially_invalid)
        parents.append({
            "parentRef": parent_ref_dict(a.parent),
            "controllerName": controller_name,
            "conditions": st.conditions(*conds),
        })
    return {"parents": parents}

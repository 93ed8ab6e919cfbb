"""Turn parsed resources into a routing Snapshot and the statuses to write back.

Pure: no I/O, no clock, no logging, and no dependence on the iteration order of the input mappings. The
caller (a config source) publishes the Snapshot with one assignment, stamps condition times and writes
the statuses. The steps, each in its own module: handled classes, Gateways and listener verdicts
(`gateways.py`); route rules, backends and attachment (`routes.py`); pool endpoints and pool parents
(`pools.py`); then the port tables that the request path reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.api.meta import ObjectRef
from kthena_router.reconcile import gateways as gws
from kthena_router.reconcile import pools as pls
from kthena_router.reconcile import routes as rts
from kthena_router.reconcile.status import Statuses
from kthena_router.resources import ReconcileOptions, Resources
from kthena_router.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    snapshot: Snapshot
    statuses: Statuses
    ports: frozenset[int]  # every port that must have a listening socket


def reconcile(resources: Resources, options: ReconcileOptions) -> ReconcileResult:
    inference = options.enable_inference_extension
    pools = pls.build_pools(resources, options) if inference else {}
    objectives = pls.build_objectives(resources) if inference else {}
    if not options.enable_gateway_api:
        statuses = Statuses(pools=pls.pool_statuses(resources, {}, options.controller_name, options) if inference else {})
        return ReconcileResult(Snapshot({}, pools, objectives), statuses, frozenset())

    classes = gws.handled_classes(resources, options)
    gateways = gws.handled_gateways(resources, options, classes)
    listeners = gws.evaluate_listeners(gateways.values(), options)

    grants = rts.grants_by_namespace(resources)
    route_statuses = {}
    pool_parents: dict[ObjectRef, set[ObjectRef]] = {}
    for ref in sorted(resources.http_routes):
        resolved = rts.resolve_route(resources.http_routes[ref], resources, options, grants)
        attachments = rts.attach_route(resolved, gateways, listeners, resources)
        seen: set[tuple[ObjectRef, str]] = set()
        for a in attachments:
            if a.listeners:
                for pool in resolved.pools:
                    pool_parents.setdefault(pool, set()).add(a.gateway)
            for state, hostnames in a.listeners:
                key = (state.ref, state.listener.name)
                if key in seen:  # two parentRefs reaching one listener attach the route once
                    continue
                seen.add(key)
                state.attached_routes += 1
                state.entries.append(rts.compile_entry(resolved, state, hostnames))
        route_statuses[ref] = rts.route_status(resolved, attachments, options.controller_name)

    all_states = [s for ref in sorted(listeners) for s in listeners[ref]]
    tables = gws.port_tables(all_states)
    statuses = Statuses(
        gateway_classes={name: gws.gateway_class_status(classes[name]) for name in sorted(classes)},
        gateways={ref: gws.gateway_status(gateways[ref], listeners[ref]) for ref in sorted(gateways)},
        http_routes=route_statuses,
        pools=pls.pool_statuses(resources, pool_parents, options.controller_name, options) if inference else {},
    )
    return ReconcileResult(Snapshot(tables, pools, objectives), statuses, frozenset(tables))

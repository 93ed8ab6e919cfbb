"""Reconcile seen from the request path: listener selection on a shared port, route lookups through the
Snapshot, pod indexing at scale, and the human-readable status print-out."""

from __future__ import annotations

import time

from multidict import CIMultiDict

from kthena_router.api import parse_resource
from kthena_router.reconcile import format_statuses, reconcile
from kthena_router.reconcile.pools import PodIndex
from kthena_router.resources import ReconcileOptions, ResourceStore


def _route(snapshot, port: int, host: str, path: str, *, method: str = "GET", headers=None, model=None):
    listener = snapshot.ports[port].select(host)
    if listener is None:
        return None
    result = listener.table.match(host, method, path, {}, CIMultiDict(headers or {}), model)
    return None if result is None else (listener.listener, str(result.rule.route), result.path.value)


def test_shared_port_selects_the_most_specific_listener(load_case) -> None:
    snap = reconcile(*load_case("listener-hostname-selection-shared-port")).snapshot
    table = snap.ports[8080]
    chosen = {host: table.select(host).listener for host in
              ("bar.com", "foo.bar.com", "x.bar.com", "a.b.bar.com", "a.foo.com", "a.sub.foo.com", "other.org",
               "foo.com")}
    assert chosen == {
        "bar.com": "bar",
        "foo.bar.com": "foo-bar",
        "x.bar.com": "wild-bar",
        "a.b.bar.com": "wild-bar",
        "a.foo.com": "wild-foo",
        "a.sub.foo.com": "wild-sub-foo",
        "other.org": "any",
        "foo.com": "any",
    }


def test_precedence_case_routes_requests_as_the_spec_orders_them(load_case) -> None:
    snap = reconcile(*load_case("route-precedence-across-routes")).snapshot
    assert _route(snap, 8080, "api.example.com", "/v1/models") == ("http", "infra/hosts", "/")
    assert _route(snap, 8080, "x.example.org", "/v1/models") == ("http", "z-team/older", "/v1/models")
    assert _route(snap, 8080, "x.example.org", "/v1/chat/completions") == ("http", "z-team/older", "/v1/chat/.*")
    assert _route(snap, 8080, "x.example.org", "/v2/chat") == ("http", "z-team/older", "/v[0-9]+/.*")
    assert _route(snap, 8080, "h", "/v1", method="POST") == ("http", "b-team/newer", "/v1")
    assert _route(snap, 8080, "h", "/v1", headers={"x-tier": "gold"}, model="llama")[1] == "b-team/newer"
    assert _route(snap, 8080, "h", "/v1") == ("http", "z-team/older", "/v1")
    assert _route(snap, 8080, "h", "/other") == ("http", "z-team/older", "/")


def test_unavailable_port_gets_no_socket(load_case) -> None:
    result = reconcile(*load_case("listener-port-unavailable"))
    assert result.ports == frozenset({8080})


def test_reconcile_is_repeatable_on_the_same_input(load_case) -> None:
    resources, options = load_case("listener-hostname-conflict")
    first = reconcile(resources, options)
    second = reconcile(resources, options)
    assert first.statuses == second.statuses
    assert first.ports == second.ports


def _pod(i: int, namespace: str, labels: dict[str, str], ready: bool = True):
    return parse_resource({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"pod-{i:05d}", "namespace": namespace, "labels": labels},
        "status": {"podIP": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    })


def _pool(name: str, namespace: str, labels: dict[str, str]):
    return parse_resource({
        "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": labels}, "targetPorts": [{"number": 8000}]},
    })


def test_pod_index_agrees_with_a_full_scan_and_stays_fast() -> None:
    store = ResourceStore()
    for i in range(6000):
        ns = f"ns-{i % 3}"
        store.put(_pod(i, ns, {"app": f"model-{i % 200}", "tier": "gpu" if i % 2 else "cpu"}, ready=i % 7 != 0))
    for j in range(200):
        store.put(_pool(f"pool-{j}", f"ns-{j % 3}", {"app": f"model-{j}", "tier": "gpu"}))
    resources = store.view()
    index = PodIndex(resources.pods.values())
    for pool in resources.pools.values():
        expected = sorted((p for p in resources.pods.values()
                           if p.is_endpoint and p.meta.namespace == pool.meta.namespace
                           and pool.selector.matches(p.meta.labels)), key=lambda p: p.meta.name)
        assert index.select(pool) == expected
    start = time.perf_counter()
    result = reconcile(resources, ReconcileOptions())
    assert time.perf_counter() - start < 2.0
    assert sum(len(p.endpoints) for p in result.snapshot.pools.values()) > 0


def test_format_statuses_prints_tables_and_problem_conditions(load_case) -> None:
    text = format_statuses(reconcile(*load_case("listener-port-unavailable")).statuses)
    assert text == """\
GATEWAYCLASSES
NAME            ACCEPTED   SUPPORTEDVERSION
kthena-router   True       True

GATEWAYS
NAMESPACE   NAME        ACCEPTED                  PROGRAMMED      LISTENERS(ROUTES)   ADDRESSES
infra       busy-only   False/ListenersNotValid   False/Invalid   busy(0)             -
infra       two-ports   True/ListenersNotValid    True            ok(0), busy(1)      -

HTTPROUTES
NAMESPACE   NAME      PARENT                 ACCEPTED   RESOLVEDREFS
infra       on-busy   infra/two-ports:9090   True       True

INFERENCEPOOLS
NAMESPACE   NAME   PARENT   ACCEPTED   RESOLVEDREFS
(none)

CONDITIONS
Gateway infra/busy-only: Accepted=False ListenersNotValid: invalid listeners: busy
Gateway infra/busy-only: Programmed=False Invalid: no listener is programmed
Gateway infra/busy-only listener busy: Accepted=False PortUnavailable: port unavailable
Gateway infra/busy-only listener busy: Programmed=False Invalid: port unavailable
Gateway infra/two-ports: Accepted=True ListenersNotValid: invalid listeners: busy
Gateway infra/two-ports listener busy: Accepted=False PortUnavailable: port unavailable
Gateway infra/two-ports listener busy: Programmed=False Invalid: port unavailable
"""

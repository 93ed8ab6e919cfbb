"""Inference extension `InferencePoolResolvedRefsCondition`: a pool lists every Gateway whose routes use it;
deleting a route removes that parent and its traffic (404), deleting the last empties `status.parents`."""

from __future__ import annotations

from tests.conformance.suite import GAIE_APP, GAIE_INFRA, expect, gaie_base, pool_conditions

PRIMARY = f"{GAIE_INFRA}/conformance-primary"
SECONDARY = f"{GAIE_INFRA}/conformance-secondary"
POOL = f"{GAIE_APP}/primary-inference-pool"
PRIMARY_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-primary-gw, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /primary-gateway-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
"""
SECONDARY_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-secondary-gw, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-secondary, namespace: inference-conformance-infra}]
  hostnames: [secondary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /secondary-gateway-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
"""
PRIMARY_REQ = {"path": "/primary-gateway-test", "host": "primary.example.com"}
SECONDARY_REQ = {"path": "/secondary-gateway-test", "host": "secondary.example.com"}


async def test_pool_parents_follow_the_routes_that_use_it(gaie):
    await gaie.start(gaie_base(), {"primary.yaml": PRIMARY_ROUTE, "secondary.yaml": SECONDARY_ROUTE})
    for gw in (PRIMARY, SECONDARY):
        assert pool_conditions(gaie, POOL, gw)["Accepted"] == ("True", "Accepted")
    await expect(gaie, PRIMARY, [(PRIMARY_REQ, "primary-inference-pool")])
    await expect(gaie, SECONDARY, [(SECONDARY_REQ, "primary-inference-pool")])

    await gaie.apply("primary.yaml", None)
    await gaie.eventually(lambda: gaie.pool_parent(POOL, PRIMARY) is None)
    assert pool_conditions(gaie, POOL, SECONDARY)["Accepted"] == ("True", "Accepted")
    await expect(gaie, PRIMARY, [(PRIMARY_REQ, 404)])
    await expect(gaie, SECONDARY, [(SECONDARY_REQ, "primary-inference-pool")])

    await gaie.apply("secondary.yaml", None)
    await gaie.eventually(lambda: gaie.statuses["inferencepools"][POOL]["parents"] == [])
    await expect(gaie, SECONDARY, [(SECONDARY_REQ, 404)])

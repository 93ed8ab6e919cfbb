"""Inference extension `HTTPRouteMultipleGatewaysDifferentPools`: two routes on two Gateways send bodyless
GETs to two pools."""

from __future__ import annotations

from tests.conformance.suite import (
    GAIE_APP,
    GAIE_INFRA,
    assert_route_accepted_and_resolved,
    expect,
    gaie_base,
    pool_conditions,
)

PRIMARY = f"{GAIE_INFRA}/conformance-primary"
SECONDARY = f"{GAIE_INFRA}/conformance-secondary"
ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route-for-primary-gateway, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-primary-gateway}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route-for-secondary-gateway, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-secondary, namespace: inference-conformance-infra}]
  hostnames: [secondary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-secondary-gateway}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: secondary-inference-pool}]
"""


async def test_each_gateway_routes_to_its_own_pool(gaie):
    await gaie.start(gaie_base(), {"routes.yaml": ROUTES})
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/route-for-primary-gateway", PRIMARY)
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/route-for-secondary-gateway", SECONDARY)
    assert pool_conditions(gaie, f"{GAIE_APP}/primary-inference-pool", PRIMARY)["Accepted"] == ("True", "Accepted")
    assert pool_conditions(gaie, f"{GAIE_APP}/secondary-inference-pool", SECONDARY)["Accepted"] == (
        "True", "Accepted")
    await expect(gaie, PRIMARY, [({"path": "/test-primary-gateway", "host": "primary.example.com"},
                                  "primary-inference-pool")])
    await expect(gaie, SECONDARY, [({"path": "/test-secondary-gateway", "host": "secondary.example.com"},
                                    "secondary-inference-pool")])

"""Inference extension `HTTPRouteMultipleRulesDifferentPools`: one route, a rule per pool."""

from __future__ import annotations

from tests.conformance.suite import (
    GAIE_APP,
    GAIE_INFRA,
    assert_route_accepted_and_resolved,
    expect,
    gaie_base,
    pool_conditions,
)

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-multiple-rules-different-pools, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /primary}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
  - matches: [{path: {type: PathPrefix, value: /secondary}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: secondary-inference-pool}]
"""


async def test_each_rule_routes_to_its_pool(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-multiple-rules-different-pools", GW)
    for pool in ("primary-inference-pool", "secondary-inference-pool"):
        assert pool_conditions(gaie, f"{GAIE_APP}/{pool}", GW)["Accepted"] == ("True", "Accepted")
    await expect(gaie, GW, [({"path": "/primary"}, "primary-inference-pool"),
                            ({"path": "/secondary"}, "secondary-inference-pool")])

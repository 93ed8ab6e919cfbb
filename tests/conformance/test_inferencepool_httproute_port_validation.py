"""Inference extension `InferencePoolHTTPRoutePortValidation`: a backendRef's port is ignored for an
InferencePool: no port, the pool's port and another port all resolve and route to the pool."""

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
ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-pool-port-unspecified, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [port-unspecified.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-port-unspecified}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-pool-port-matching, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [port-matching.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-port-matching}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool, port: ${PORT:gaie-3000}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-pool-port-non-matching, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [port-non-matching.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-port-non-matching}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool, port: 8888}]
"""


async def test_backend_ref_port_does_not_matter_for_a_pool(gaie):
    await gaie.start(gaie_base(), {"routes.yaml": ROUTES})
    for case in ("unspecified", "matching", "non-matching"):
        assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-pool-port-{case}", GW)
        await expect(gaie, GW, [({"path": f"/test-port-{case}", "host": f"port-{case}.example.com"},
                                 "primary-inference-pool")])
    assert pool_conditions(gaie, f"{GAIE_APP}/primary-inference-pool", GW)["Accepted"] == ("True", "Accepted")

"""Inference extension `InferencePoolMissingEPPRef`: a pool without endpointPickerRef is Accepted=True (the
router picks endpoints itself; upstream also allows Accepted=False/EndpointPickerRefMissing) and its route
is Accepted."""

from __future__ import annotations

from tests.conformance.suite import GAIE_APP, GAIE_INFRA, gaie_base, pool_conditions, route_conditions

GW = f"{GAIE_INFRA}/conformance-primary"
MANIFESTS = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-with-missing-epp-ref, namespace: inference-conformance-app-backend}
spec:
  selector: {matchLabels: {app: primary-inference-pool}}
  targetPorts: [{number: ${PORT:gaie-3000}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-missing-epp-ref-pool, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /missing-epp-ref-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-with-missing-epp-ref}]
"""


async def test_pool_without_endpoint_picker_is_accepted_and_serves(gaie):
    await gaie.start(gaie_base(), {"pool.yaml": MANIFESTS})
    assert route_conditions(gaie, f"{GAIE_APP}/httproute-for-missing-epp-ref-pool", GW)["Accepted"] == ("True", "Accepted")
    assert pool_conditions(gaie, f"{GAIE_APP}/pool-with-missing-epp-ref", GW)["Accepted"] == ("True", "Accepted")
    reply = await gaie.request(GW, "/missing-epp-ref-test")
    assert reply.status == 200 and reply.pod.startswith("primary-inference-pool-")

"""Inference extension `InferencePoolInvalidEPPService`: a pool whose endpointPickerRef names a missing
Service gets ResolvedRefs=False and its traffic a 5xx; the route stays Accepted.

The router checks endpointPickerRef Services only in Kubernetes mode (where Services are watched); file
mode has no Services to check, so here the pool resolves and serves.
"""

from __future__ import annotations

import pytest

from tests.conformance.suite import GAIE_APP, GAIE_INFRA, gaie_base, pool_conditions, route_conditions

GW = f"{GAIE_INFRA}/conformance-primary"
MANIFESTS = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-with-invalid-epp, namespace: inference-conformance-app-backend}
spec:
  selector: {matchLabels: {app: primary-inference-pool}}
  targetPorts: [{number: ${PORT:gaie-3000}}]
  endpointPickerRef: {name: non-existent-epp-svc, port: {number: 9002}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-invalid-epp-pool, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /invalid-epp-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-with-invalid-epp}]
"""


@pytest.mark.xfail(strict=True, reason="file mode does not check endpointPickerRef Services "
                                       "(check_extension_refs is on only in Kubernetes mode)")
async def test_pool_with_missing_endpoint_picker_service_is_unresolved_and_fails_requests(gaie):
    await gaie.start(gaie_base(), {"pool.yaml": MANIFESTS})
    assert route_conditions(gaie, f"{GAIE_APP}/httproute-for-invalid-epp-pool", GW)["Accepted"][0] == "True"
    assert pool_conditions(gaie, f"{GAIE_APP}/pool-with-invalid-epp", GW)["ResolvedRefs"][0] == "False"
    reply = await gaie.request(GW, "/invalid-epp-test")
    assert reply.status in (500, 501, 502, 503, 504) and reply.echo is None

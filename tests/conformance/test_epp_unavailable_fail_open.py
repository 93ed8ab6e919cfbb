"""Inference extension `EppUnAvailableFailOpen`: the FailOpen secondary pool serves the selected pod, and
keeps serving when its endpoint picker is unavailable.

The router has no external endpoint picker, so "unavailable" here means the pool's endpointPickerRef names
a Service that does not exist; traffic must still reach a secondary pod.
"""

from __future__ import annotations

from tests.conformance.suite import (
    GAIE_BACKENDS,
    GAIE_BODY,
    GAIE_INFRA,
    SELECTION_HEADER,
    backend_by_name,
    gaie_base,
)

GW = f"{GAIE_INFRA}/conformance-secondary"
HOST = "secondary.example.com"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-failopen-pool-gw, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-secondary, namespace: inference-conformance-infra}]
  hostnames: [secondary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /failopen-pool-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: secondary-inference-pool}]
"""


async def test_fail_open_pool_serves_with_and_without_its_picker(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE}, conformance_test_mode=True)
    pool = backend_by_name(GAIE_BACKENDS, "secondary-inference-pool")
    reply = await gaie.request(GW, "/failopen-pool-test", host=HOST, method="POST", json=GAIE_BODY,
                               headers={SELECTION_HEADER: pool.ips[0]})
    assert reply.status == 200 and reply.pod == pool.pod_name(pool.ips[0])

    for _ in range(10):
        reply = await gaie.request(GW, "/failopen-pool-test", host=HOST, method="POST", json=GAIE_BODY)
        assert reply.status == 200 and reply.pod in {pool.pod_name(ip) for ip in pool.ips}

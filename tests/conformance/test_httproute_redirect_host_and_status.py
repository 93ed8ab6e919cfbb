"""Gateway API `HTTPRouteRedirectHostAndStatus`: RequestRedirect sets the Location host and the status code."""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-host-and-status, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {hostname: example.org}}
  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {statusCode: 301, hostname: example.org}}
"""


async def test_redirects_carry_the_new_host_and_status(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert route_conditions(gateway_api, f"{INFRA}/redirect-host-and-status", GW)["Accepted"][0] == "True"
    for path, status in (("/hostname-redirect", 302), ("/host-and-status", 301)):
        reply = await gateway_api.request(GW, path)
        assert reply.status == status, (path, reply.status, reply.text)
        location = reply.headers["Location"]
        assert location.startswith("http://example.org") and location.endswith(path), location

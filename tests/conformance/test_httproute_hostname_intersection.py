"""Gateway API `HTTPRouteHostnameIntersection`: a route serves only the hostnames it shares with a listener
(exact or wildcard on either side); the Host header's port is ignored; a route sharing none is
Accepted=False/NoMatchingListenerHostname.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import (
    INFRA,
    assert_route_accepted_and_resolved,
    expect,
    gateway_api_base,
    route_conditions,
)

GW = f"{INFRA}/httproute-hostname-intersection"
GW_ALL = f"{INFRA}/httproute-hostname-intersection-all"
LISTENER = "{port: ${PORT:hostname-intersection}, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}"
MANIFESTS = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {LISTENER}, name: listener-1, hostname: very.specific.com}}
  - {LISTENER}, name: listener-2, hostname: "*.wildcard.io"}}
  - {LISTENER}, name: listener-3, hostname: "*.anotherwildcard.io"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{port: ${{PORT:hostname-intersection-all}}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}},
     name: listener-1}}
""" + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: specific-host-matches-listener-specific-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection}]
  hostnames: [non.matching.com, "*.nonmatchingwildcard.io", very.specific.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s1}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: specific-host-matches-listener-wildcard-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection}]
  hostnames: [non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s2}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard-host-matches-listener-specific-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection}]
  hostnames: [non.matching.com, "*.specific.com"]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s3}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard-host-matches-listener-wildcard-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection}]
  hostnames: ["*.anotherwildcard.io"]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s4}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-intersecting-hosts, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection}]
  hostnames: [specific.but.wrong.com, wildcard.io]
  rules:
  - matches: [{path: {type: PathPrefix, value: /s5}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection-all}]
  hostnames: [first.com, sub.first.com, second.com, sub.second.com]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_routes_serve_only_the_hostnames_they_share_with_a_listener(gateway_api):
    await gateway_api.start(gateway_api_base(), {"intersection.yaml": MANIFESTS})
    for route in ("specific-host-matches-listener-specific-host", "specific-host-matches-listener-wildcard-host",
                  "wildcard-host-matches-listener-specific-host", "wildcard-host-matches-listener-wildcard-host"):
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/{route}", GW)
    await expect(gateway_api, GW, [
        ({"host": "very.specific.com", "path": "/s1"}, "infra-backend-v1"),
        ({"host": "very.specific.com:1234", "path": "/s1"}, "infra-backend-v1"),
        ({"host": "non.matching.com", "path": "/s1"}, 404),
        ({"host": "foo.nonmatchingwildcard.io", "path": "/s1"}, 404),
        ({"host": "foo.wildcard.io", "path": "/s1"}, 404),
        ({"host": "very.specific.com", "path": "/non-matching-prefix"}, 404),
        ({"host": "foo.wildcard.io", "path": "/s2"}, "infra-backend-v2"),
        ({"host": "bar.wildcard.io", "path": "/s2"}, "infra-backend-v2"),
        ({"host": "foo.bar.wildcard.io", "path": "/s2"}, "infra-backend-v2"),
        ({"host": "non.matching.com", "path": "/s2"}, 404),
        ({"host": "wildcard.io", "path": "/s2"}, 404),
        ({"host": "very.specific.com", "path": "/s2"}, 404),
        ({"host": "foo.wildcard.io", "path": "/non-matching-prefix"}, 404),
        ({"host": "very.specific.com", "path": "/s3"}, "infra-backend-v3"),
        ({"host": "non.matching.com", "path": "/s3"}, 404),
        ({"host": "foo.specific.com", "path": "/s3"}, 404),
        ({"host": "foo.wildcard.io", "path": "/s3"}, 404),
        ({"host": "foo.anotherwildcard.io", "path": "/s4"}, "infra-backend-v1"),
        ({"host": "bar.anotherwildcard.io", "path": "/s4"}, "infra-backend-v1"),
        ({"host": "foo.bar.anotherwildcard.io", "path": "/s4"}, "infra-backend-v1"),
        ({"host": "anotherwildcard.io", "path": "/s4"}, 404),
        ({"host": "foo.wildcard.io", "path": "/s4"}, 404),
        ({"host": "very.specific.com", "path": "/s4"}, 404),
        ({"host": "specific.but.wrong.com", "path": "/s5"}, 404),
        ({"host": "wildcard.io", "path": "/s5"}, 404),
    ])
    got = route_conditions(gateway_api, f"{INFRA}/no-intersecting-hosts", GW)
    assert got["Accepted"] == ("False", "NoMatchingListenerHostname")

    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/httproute-hostname-intersection-all", GW_ALL)
    await expect(gateway_api, GW_ALL, [
        ({"host": host, "path": "/"}, "infra-backend-v2")
        for host in ("first.com", "sub.first.com", "second.com", "sub.second.com")
    ] + [({"host": "third.com", "path": "/"}, 404)])

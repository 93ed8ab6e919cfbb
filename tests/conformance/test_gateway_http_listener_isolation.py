"""Gateway API `GatewayHTTPListenerIsolation`: on one port, a request is served only by the routes of the
most specific listener matching its host (no hostname, *.example.com, *.foo.example.com,
abc.foo.example.com); the others' routes answer 404.

The upstream variant where the routes also carry hostnames is left out. Service infra-backend-v1 is an
InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/http-listener-isolation"
LISTENERS = (("empty-hostname", None), ("wildcard-example-com", "*.example.com"),
             ("wildcard-foo-example-com", "*.foo.example.com"), ("abc-foo-example-com", "abc.foo.example.com"))


def _manifests() -> str:
    lines = ["apiVersion: gateway.networking.k8s.io/v1", "kind: Gateway",
             "metadata: {name: http-listener-isolation, namespace: gateway-conformance-infra}",
             "spec:", "  gatewayClassName: kthena-router", "  listeners:"]
    for name, hostname in LISTENERS:
        host = f", hostname: '{hostname}'" if hostname else ""
        lines.append(f"  - {{name: {name}, port: ${{PORT:isolation}}, protocol: HTTP{host}, "
                     "allowedRoutes: {namespaces: {from: All}}}")
    docs = ["\n".join(lines)]
    for name, _ in LISTENERS:
        docs.append(f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: attaches-to-{name}, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: http-listener-isolation, namespace: gateway-conformance-infra, sectionName: {name}}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
""")
    return "\n---\n".join(docs)


async def test_only_the_most_specific_listener_serves_a_host(gateway_api):
    await gateway_api.start(gateway_api_base(), {"isolation.yaml": _manifests()})
    for name, _ in LISTENERS:
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/attaches-to-{name}", GW)
    owner = {"bar.com": "empty-hostname", "bar.example.com": "wildcard-example-com",
             "bar.foo.example.com": "wildcard-foo-example-com", "abc.foo.example.com": "abc-foo-example-com"}
    cases = []
    for host, serving in owner.items():
        for name, _ in LISTENERS:
            cases.append(({"host": host, "path": f"/{name}"}, "infra-backend-v1" if name == serving else 404))
    await expect(gateway_api, GW, cases)

"""Gateway API `GatewayListenerUnsupportedProtocol`: a listener of an unknown protocol is
Accepted=False/UnsupportedProtocol; a Gateway with only such listeners is Accepted=False/ListenersNotValid,
one that also has a valid listener is Accepted=True/ListenersNotValid."""

from __future__ import annotations

from tests.conformance.suite import INFRA, condition, gateway_api_base

MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-only-unsupported-protocols, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: invalid, port: ${PORT:invalid-protocol}, protocol: INVALID}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-supported-and-unsupported-protocols, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, port: ${PORT:valid-protocol}, protocol: HTTP}
  - {name: invalid, port: ${PORT:invalid-protocol}, protocol: INVALID}
"""


def _listener(status: dict, name: str) -> dict:
    (found,) = [entry for entry in status["listeners"] if entry["name"] == name]
    return found


async def test_unknown_protocol_listeners_are_not_accepted(gateway_api):
    await gateway_api.start(gateway_api_base(), {"gateways.yaml": MANIFESTS})
    only = gateway_api.gateway_status(f"{INFRA}/gateway-only-unsupported-protocols")
    assert condition(only, "Accepted") == ("False", "ListenersNotValid")
    invalid = _listener(only, "invalid")
    assert condition(invalid, "Accepted") == ("False", "UnsupportedProtocol")
    assert invalid["attachedRoutes"] == 0

    mixed = gateway_api.gateway_status(f"{INFRA}/gateway-supported-and-unsupported-protocols")
    assert condition(mixed, "Accepted") == ("True", "ListenersNotValid")
    http = _listener(mixed, "http")
    assert condition(http, "Accepted") == ("True", "Accepted")
    assert {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"} in http["supportedKinds"]
    assert condition(_listener(mixed, "invalid"), "Accepted") == ("False", "UnsupportedProtocol")

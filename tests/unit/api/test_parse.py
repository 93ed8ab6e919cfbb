import pytest
import yaml

from kthena_router.api import InvalidResource, UnknownKind, parse_resource
from kthena_router.api.hostnames import intersect, normalize_host
from kthena_router.api.httproute import HTTPRoute, parse_duration
from kthena_router.api.inferencepool import InferencePool


def _parse(text: str):
    return parse_resource(yaml.safe_load(text))


POOL_V1 = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p, namespace: ns}
spec:
  selector: {matchLabels: {app: m}}
  targetPorts: [{number: 8000}, {number: 8001}]
"""

POOL_V1ALPHA2 = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: p, namespace: ns}
spec:
  selector: {app: m}
  targetPortNumber: 8000
  extensionRef: {name: epp}
"""


def test_v1_and_v1alpha2_pools_parse_to_the_same_type():
    v1, alpha = _parse(POOL_V1), _parse(POOL_V1ALPHA2)
    assert isinstance(v1, InferencePool) and isinstance(alpha, InferencePool)
    assert v1.selector == alpha.selector
    assert v1.target_ports == (8000, 8001)
    assert alpha.target_ports == (8000,)
    assert alpha.endpoint_picker_ref.name == "epp" and alpha.endpoint_picker_ref.port == 9002
    assert v1.endpoint_picker_ref is None


def test_a_pool_scheduler_annotation_is_kept_as_text_for_reconcile_to_validate():
    raw = yaml.safe_load(POOL_V1)
    raw["metadata"]["annotations"] = {"kthena.io/scheduler-config": "not: [valid"}
    assert _parse(yaml.safe_dump(raw)).scheduler_config == "not: [valid"
    assert _parse(POOL_V1).scheduler_config is None


@pytest.mark.parametrize("patch, field", [
    ({"targetPorts": [{"number": 8000}, {"number": 8000}]}, "spec.targetPorts[1].number"),
    ({"targetPorts": [{"number": p} for p in range(8000, 8009)]}, "spec.targetPorts"),
    ({"targetPorts": [{"number": 70000}]}, "spec.targetPorts[0].number"),
    ({"selector": {"matchLabels": {}}}, "spec.selector.matchLabels"),
    ({"selector": {"matchLabels": {"app": "bad value!"}}}, "spec.selector.matchLabels.app"),
    ({"endpointPickerRef": {"name": "epp"}}, "spec.endpointPickerRef.port"),
])
def test_invalid_pools_name_the_field(patch, field):
    raw = yaml.safe_load(POOL_V1)
    raw["spec"].update(patch)
    with pytest.raises(InvalidResource) as err:
        parse_resource(raw)
    assert err.value.field_path == field
    assert "InferencePool ns/p" in str(err.value)


ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: ["*.Example.com"]
  rules:
  - matches:
    - path: {type: Exact, value: /v1/completions}
      headers: [{name: X-A, value: "1"}, {name: x-a, value: "2"}]
      method: POST
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool, weight: 3}
    timeouts: {request: 1m30s, backendRequest: 500ms}
"""


def test_route_defaults_and_normalisation():
    route = _parse(ROUTE)
    assert isinstance(route, HTTPRoute)
    parent = route.parent_refs[0]
    assert (parent.group, parent.kind, parent.namespace, parent.section_name) == (
        "gateway.networking.k8s.io", "Gateway", "ns", "http")
    assert route.hostnames == ("*.example.com",)
    match = route.rules[0].matches[0]
    assert [h.value for h in match.headers] == ["1"]  # the first of two equivalent names wins
    assert route.rules[0].timeouts.request == 90.0
    assert route.rules[0].timeouts.backend_request == 0.5
    assert route.rules[0].backend_refs[0].weight == 3


def test_a_route_without_rules_gets_the_default_prefix_rule():
    route = _parse("""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec: {parentRefs: [{name: gw}]}
""")
    assert route.meta.namespace == "default"
    assert route.rules[0].matches[0].path.type == "PathPrefix"
    assert route.rules[0].matches[0].path.value == "/"


@pytest.mark.parametrize("rule, field", [
    ({"matches": [{"path": {"type": "PathPrefix", "value": "v1"}}]}, "spec.rules[0].matches[0].path.value"),
    ({"matches": [{"path": {"type": "RegularExpression", "value": "(["}}]}, "spec.rules[0].matches[0].path.value"),
    ({"matches": [{"method": "FETCH"}]}, "spec.rules[0].matches[0].method"),
    ({"timeouts": {"request": "10 seconds"}}, "spec.rules[0].timeouts.request"),
    ({"timeouts": {"request": "1s", "backendRequest": "2s"}}, "spec.rules[0].timeouts.backendRequest"),
    ({"backendRefs": [{"name": "p", "weight": -1}]}, "spec.rules[0].backendRefs[0].weight"),
    ({"filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                 "replacePrefixMatch": "/x"}}}],
      "matches": [{"path": {"type": "Exact", "value": "/a"}}]}, "spec.rules[0].filters"),
])
def test_invalid_routes_name_the_field(rule, field):
    raw = yaml.safe_load(ROUTE)
    raw["spec"]["rules"] = [rule]
    with pytest.raises(InvalidResource) as err:
        parse_resource(raw)
    assert err.value.field_path == field


def test_unknown_kinds_are_reported_as_such():
    with pytest.raises(UnknownKind):
        parse_resource({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})


def test_pod_readiness_and_engine():
    pod = _parse("""
apiVersion: v1
kind: Pod
metadata: {name: p, labels: {inference.networking.k8s.io/engine-type: sglang}}
status: {podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}
""")
    assert pod.is_endpoint and pod.engine == "sglang"


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("1h", 3600), ("1h30m", 5400), ("0s", 0.0),
                                           ("10", None), ("1.5s", None), ("", None)])
def test_durations_follow_gep_2257(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("listener, route, expected", [
    (None, "a.example.com", "a.example.com"),
    ("a.example.com", "a.example.com", "a.example.com"),
    ("*.example.com", "a.example.com", "a.example.com"),
    ("a.example.com", "*.example.com", "a.example.com"),
    ("*.example.com", "*.a.example.com", "*.a.example.com"),
    ("*.a.example.com", "*.example.com", "*.a.example.com"),
    ("*.example.com", "example.com", None),
    ("b.example.com", "a.example.com", None),
])
def test_hostname_intersection(listener, route, expected):
    assert intersect(listener, route) == expected


@pytest.mark.parametrize("header, host", [("Example.COM:8080", "example.com"), ("example.com.", "example.com"),
                                          ("[::1]:80", "[::1]"), ("host", "host")])
def test_host_header_port_and_case_are_ignored(header, host):
    assert normalize_host(header) == host

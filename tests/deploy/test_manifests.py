"""The manifests in deploy/: well-formed Kubernetes objects, least privilege, a safe and drainable Deployment.

Schema-level checks (kinds, apiVersions, required fields) run everywhere; `kubectl kustomize` runs only
where kubectl is installed. The example Gateway API and Inference Extension objects are also parsed with the
router's own parser, so what the guide applies is what the router accepts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kthena_router.api import parse_resource
from kthena_router.cli import _seconds
from kthena_router.scheduling.config import parse_scheduler_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = DEPLOY / "examples"

# (apiVersion, kind) -> dotted paths that must be present.
KNOWN: dict[tuple[str, str], tuple[str, ...]] = {
    ("v1", "Namespace"): ("metadata.name",),
    ("v1", "ServiceAccount"): ("metadata.name", "metadata.namespace"),
    ("v1", "ConfigMap"): ("metadata.name", "metadata.namespace", "data"),
    ("v1", "Service"): ("metadata.name", "metadata.namespace", "spec.selector", "spec.ports"),
    ("apps/v1", "Deployment"): ("metadata.name", "metadata.namespace", "spec.selector.matchLabels",
                                "spec.template.metadata.labels", "spec.template.spec.containers"),
    ("policy/v1", "PodDisruptionBudget"): ("metadata.name", "metadata.namespace", "spec.selector.matchLabels"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("metadata.name", "rules"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("metadata.name", "roleRef", "subjects"),
    ("rbac.authorization.k8s.io/v1", "Role"): ("metadata.name", "metadata.namespace", "rules"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("metadata.name", "metadata.namespace", "roleRef", "subjects"),
    ("gateway.networking.k8s.io/v1", "GatewayClass"): ("metadata.name", "spec.controllerName"),
    ("gateway.networking.k8s.io/v1", "Gateway"): ("metadata.name", "spec.gatewayClassName", "spec.listeners"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("metadata.name", "spec.parentRefs", "spec.rules"),
    ("inference.networking.k8s.io/v1", "InferencePool"): ("metadata.name", "spec.selector.matchLabels",
                                                          "spec.targetPorts"),
}
KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
ROUTER_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "InferencePool"}
PRESTOP_AND_MARGIN = 10  # seconds the grace period must exceed the drain by, at least


def _manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.stem != "kustomization")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for d in (DEPLOY, EXAMPLES) for path in _manifest_files(d) for doc in _documents(path)]


def _get(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for _, doc in _all_objects() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _router_container() -> dict[str, Any]:
    deployment = _one("Deployment", "kthena-router")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


OBJECTS = _all_objects()


@pytest.mark.parametrize(("path", "doc"), OBJECTS, ids=[f"{p.name}:{d.get('kind')}/{_get(d, 'metadata.name')}"
                                                        for p, d in OBJECTS])
def test_every_object_has_a_known_kind_and_its_required_fields(path: Path, doc: dict[str, Any]) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in KNOWN, f"{path.name}: unexpected apiVersion/kind {key}"
    missing = [field for field in KNOWN[key] if _get(doc, field) in (None, "", [], {})]
    assert not missing, f"{path.name}: {key[1]} {_get(doc, 'metadata.name')} lacks {missing}"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec", "data", "rules", "roleRef", "subjects",
                        "automountServiceAccountToken"}, f"{path.name}: unexpected top-level keys {sorted(doc)}"


@pytest.mark.parametrize("directory", [DEPLOY, EXAMPLES], ids=["deploy", "examples"])
def test_kustomization_lists_exactly_the_manifests_of_its_directory(directory: Path) -> None:
    (kustomization,) = _documents(directory / "kustomization.yaml")
    assert (kustomization["apiVersion"], kustomization["kind"]) == KUSTOMIZATION
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == [p.name for p in _manifest_files(directory)]


def test_the_router_objects_live_in_kthena_system() -> None:
    for path in _manifest_files(DEPLOY):
        for doc in _documents(path):
            if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                continue
            assert doc["metadata"]["namespace"] == "kthena-system", f"{path.name}: {doc['kind']}"
    assert _one("Namespace")["metadata"]["name"] == "kthena-system"


def test_example_gateway_api_and_inference_objects_parse_with_the_routers_parser() -> None:
    parsed = {}
    for path in _manifest_files(EXAMPLES):
        for doc in _documents(path):
            if doc["kind"] in ROUTER_KINDS:
                parsed[doc["kind"]] = parse_resource(doc)
    assert set(parsed) == ROUTER_KINDS
    pool = parsed["InferencePool"]
    assert pool.selector.matches({"workload.serving.volcano.sh/model-name": "demo"})
    assert not pool.selector.matches({"workload.serving.volcano.sh/model-name": "other"})
    assert pool.target_ports == (8000,)


def test_example_objects_are_the_guides() -> None:
    assert _one("GatewayClass")["spec"]["controllerName"] == "volcano.sh/kthena-router"
    gateway = _one("Gateway", "inference-gateway")
    assert gateway["spec"]["gatewayClassName"] == "kthena-router"
    assert [listener["port"] for listener in gateway["spec"]["listeners"]] == [8080]
    route = _one("HTTPRoute", "kthena-demo-route")
    assert route["spec"]["parentRefs"] == [{"name": "inference-gateway"}]
    (rule,) = route["spec"]["rules"]
    assert rule["timeouts"] == {"request": "300s"}
    assert rule["backendRefs"][0]["kind"] == "InferencePool" and rule["backendRefs"][0]["name"] == "kthena-demo"
    server = _one("Deployment", "demo-model-server")
    labels = server["spec"]["template"]["metadata"]["labels"]
    assert labels["workload.serving.volcano.sh/model-name"] == "demo"
    (container,) = server["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("vllm/vllm-openai")
    assert "--model=Qwen/Qwen2.5-0.5B-Instruct" in container["args"]
    assert {"containerPort": 8000}.items() <= container["ports"][0].items()


def test_router_runs_non_root_read_only_without_privileges() -> None:
    pod_spec = _one("Deployment", "kthena-router")["spec"]["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == 65532  # the Dockerfile's user
    context = _router_container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]


def test_router_args_match_the_guide_and_the_config_map_is_mounted_where_they_point() -> None:
    container = _router_container()
    assert container["image"] == "kthena-router:latest"
    args = container["args"]
    for arg in ("--port=8080", "--metrics-port=9090", "--enable-gateway-api=true",
                "--enable-gateway-api-inference-extension=true",
                "--scheduler-config=/etc/kthena-router/scheduler.yaml"):
        assert arg in args
    assert not any(a.startswith("--config-dir") for a in args), "Kubernetes mode needs no --config-dir"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/kthena-router"]
    pod_spec = _one("Deployment", "kthena-router")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == mount["name"]]
    config_map = _one("ConfigMap", volume["configMap"]["name"])
    assert "scheduler.yaml" in config_map["data"]
    env = _env(container)
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert _one("Deployment", "kthena-router")["spec"]["replicas"] >= 2


def test_scheduler_config_map_is_a_valid_scheduler_config() -> None:
    raw = yaml.safe_load(_one("ConfigMap", "kthena-router-config")["data"]["scheduler.yaml"])
    config = parse_scheduler_config(raw, "configmap.yaml")
    text = repr(config)
    for plugin in ("least-request", "kv-cache", "queue", "prefix-cache"):
        assert plugin in text


def test_probes_use_healthz_and_readyz_on_the_router_port() -> None:
    container = _router_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_grace_period_covers_the_prestop_pause_and_the_drain_with_a_margin() -> None:
    pod_spec = _one("Deployment", "kthena-router")["spec"]["template"]["spec"]
    container = _router_container()
    drain = _seconds(_env(container)["DRAIN_TIMEOUT"]["value"])
    assert drain == 300  # kthena's 5m
    pause = 0.0
    prestop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if prestop[:1] == ["sleep"]:
        pause = float(prestop[1])
    assert pod_spec["terminationGracePeriodSeconds"] >= pause + drain + PRESTOP_AND_MARGIN
    assert pod_spec["terminationGracePeriodSeconds"] == 330


def test_services_send_port_80_to_the_router_and_expose_metrics_separately() -> None:
    labels = _one("Deployment", "kthena-router")["spec"]["template"]["metadata"]["labels"]
    inference = _one("Service", "kthena-router")
    assert inference["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    metrics = _one("Service", "kthena-router-metrics")
    assert [(p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [(9090, "metrics")]
    for service in (inference, metrics):
        assert service["spec"]["selector"].items() <= labels.items()
    pdb = _one("PodDisruptionBudget", "kthena-router")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in doc["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_rbac_grants_no_wildcards_no_secrets_and_leases_only_in_the_router_namespace() -> None:
    cluster = _rules(_one("ClusterRole", "kthena-router"))
    assert not [r for r in cluster if "*" in r], "wildcards grant more than the router uses"
    assert not [r for r in cluster if r[1] in ("secrets", "leases", "events", "configmaps")]
    assert not [r for r in cluster if r[2] in ("delete", "deletecollection", "escalate", "bind", "impersonate")]
    role = _one("Role", "kthena-router-leader-election")
    assert _rules(role) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    for binding, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        doc = _one(binding)
        assert doc["roleRef"]["kind"] == role_kind
        assert doc["subjects"] == [{"kind": "ServiceAccount", "name": "kthena-router", "namespace": "kthena-system"}]
    pod_spec = _one("Deployment", "kthena-router")["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == _one("ServiceAccount")["metadata"]["name"]


def test_rbac_rules_are_exactly_those_the_router_code_declares() -> None:
    rbac = pytest.importorskip("kthena_router.sources.rbac",
                               reason="kthena_router/sources/rbac.py is absent: nothing to compare against")
    if hasattr(rbac, "REQUIRED_RULES"):
        declared_cluster, declared_namespace = rbac.REQUIRED_RULES, ()
    elif hasattr(rbac, "CLUSTER_RULES"):
        declared_cluster, declared_namespace = rbac.CLUSTER_RULES, rbac.NAMESPACE_RULES
    else:
        pytest.skip("kthena_router.sources.rbac declares neither REQUIRED_RULES nor CLUSTER_RULES")

    def flat(rules) -> set[tuple[str, str, str]]:
        return {(r.api_group, resource, verb) for r in rules for resource in r.resources for verb in r.verbs}

    assert _rules(_one("ClusterRole", "kthena-router")) == flat(declared_cluster)
    assert _rules(_one("Role", "kthena-router-leader-election")) == flat(declared_namespace)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", [DEPLOY, EXAMPLES], ids=["deploy", "examples"])
def test_kubectl_kustomize_builds_every_object(directory: Path) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    built = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d}
    expected = {(d["kind"], d["metadata"]["name"]) for p in _manifest_files(directory) for d in _documents(p)}
    assert built == expected

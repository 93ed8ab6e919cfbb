"""Manifests the Kubernetes-mode tests put in the API stand-in."""

from __future__ import annotations

from typing import Any


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def pod(name: str, ip: str, labels: dict[str, str], *, namespace: str = "default",
        ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "server", "image": "vllm"}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pool(name: str, port: int, labels: dict[str, str], *, namespace: str = "default",
         picker_service: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "targetPorts": [{"number": port}]}
    if picker_service is not None:
        spec["endpointPickerRef"] = {"name": picker_service, "port": {"number": 9002}}
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def service(name: str, *, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": 9002}]}}


def gateway(name: str, port: int, *, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"gatewayClassName": "kthena-router",
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def route(name: str, gateway_name: str, pool_name: str, *, namespace: str = "default",
          model: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                             "name": pool_name}]}
    if model is not None:
        rule["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": gateway_name}], "rules": [rule]}}

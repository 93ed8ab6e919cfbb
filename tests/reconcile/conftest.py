"""Golden-test support: loading a case's manifests, rendering reconcile output, and the switch
`pytest tests/reconcile --update-golden` that rewrites the `*.out.yaml` files.

An input may hold one test-only document `kind: ReconcileOptions` whose keys (camelCase) set the
options: defaultPort, routerNamespace, enableGatewayApi, enableInferenceExtension, unavailablePorts,
checkExtensionRefs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kthena_router.api import parse_resource
from kthena_router.reconcile import ReconcileResult
from kthena_router.resources import ReconcileOptions, Resources, ResourceStore
from kthena_router.scheduling.config import describe_config
from kthena_router.snapshot import ListenerRoutes, Snapshot

CASES = Path(__file__).parent / "cases"

_OPTION_KEYS = {
    "defaultPort": "default_port",
    "routerNamespace": "router_namespace",
    "enableGatewayApi": "enable_gateway_api",
    "enableInferenceExtension": "enable_inference_extension",
    "unavailablePorts": "unavailable_ports",
    "checkExtensionRefs": "check_extension_refs",
}


def _load_case(name: str) -> tuple[Resources, ReconcileOptions]:
    store = ResourceStore()
    options: dict[str, Any] = {}
    for doc in yaml.safe_load_all((CASES / f"{name}.in.yaml").read_text()):
        if doc is None:
            continue
        if doc.get("kind") == "ReconcileOptions":
            for key, value in doc.get("spec", {}).items():
                options[_OPTION_KEYS[key]] = frozenset(value) if key == "unavailablePorts" else value
            continue
        store.put(parse_resource(doc))
    return store.view(), ReconcileOptions(**options)


def _listener(lr: ListenerRoutes) -> dict[str, Any]:
    return {
        "gateway": str(lr.gateway),
        "listener": lr.listener,
        "hostname": lr.hostname,
        "routes": lr.table.describe(),
    }


def summarize(snapshot: Snapshot) -> dict[str, Any]:
    """The Snapshot as plain data: listeners per port in selection order, pools with their endpoints."""
    ports = {}
    for port in sorted(snapshot.ports):
        table = snapshot.ports[port]
        listeners = [table.exact[h] for h in sorted(table.exact)] + [lr for _, lr in table.wildcard]
        if table.catch_all is not None:
            listeners.append(table.catch_all)
        ports[port] = [_listener(lr) for lr in listeners]
    pools: dict[str, Any] = {}
    for ref, pool in sorted(snapshot.pools.items()):
        pools[str(ref)] = {
            "appProtocol": pool.app_protocol,
            "endpoints": [f"{e.address} pod={e.pod} engine={e.engine}" for e in pool.endpoints],
        }
        if pool.unusable_reason is not None:
            pools[str(ref)]["unusableReason"] = pool.unusable_reason
        if pool.scheduler_config is not None:
            pools[str(ref)]["scheduler"] = describe_config(pool.scheduler_config)
        if pool.scheduler_error is not None:
            pools[str(ref)]["schedulerError"] = pool.scheduler_error
    out: dict[str, Any] = {"ports": ports, "pools": pools}
    if snapshot.objectives:
        out["objectives"] = {str(ref): {"pool": pool, "priority": priority}
                             for ref, (pool, priority) in sorted(snapshot.objectives.items())}
    return out


class _Dumper(yaml.SafeDumper):
    """Block style, except that each condition and each reference is one flow-style line."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "observedGeneration" in data or "kind" in data and "name" in data
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(dict, _represent_dict)


def _render(result: ReconcileResult) -> str:
    data = {"snapshot": summarize(result.snapshot), "statuses": result.statuses.to_dict()}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)



def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/reconcile/cases/*.out.yaml from the current reconcile output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))


@pytest.fixture
def load_case() -> Callable[[str], tuple[Resources, ReconcileOptions]]:
    """`load_case(name)`: the Resources and options of `cases/<name>.in.yaml`."""
    return _load_case


@pytest.fixture
def render() -> Callable[[ReconcileResult], str]:
    """`render(result)`: the golden text of a reconcile result."""
    return _render

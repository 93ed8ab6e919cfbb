"""The exact Kubernetes API access Kubernetes mode uses, for the ClusterRole and Role that grant it.

Kept next to the code that makes the calls (`kube.py` watches, `status.py` writes status and creates the
defaults, `leader.py` holds the Lease); `tests/kube` checks that every request the router sends to the API
stand-in is covered by these rules.
"""

from __future__ import annotations

from typing import NamedTuple


class Rule(NamedTuple):
    api_group: str  # "" is the core API
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


# Cluster-wide (a ClusterRole; with --watch-namespace a Role in that namespace suffices for the namespaced
# kinds, but Namespaces are cluster-scoped and still need list/watch on the one named namespace).
CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("gateway.networking.k8s.io", ("gatewayclasses", "gateways", "httproutes", "referencegrants"),
         ("list", "watch")),
    Rule("gateway.networking.k8s.io", ("gatewayclasses", "gateways", "httproutes"), ("get",)),
    Rule("gateway.networking.k8s.io", ("gatewayclasses", "gateways"), ("create",)),
    Rule("gateway.networking.k8s.io", ("gatewayclasses/status", "gateways/status", "httproutes/status"),
         ("patch",)),
    Rule("inference.networking.k8s.io", ("inferencepools",), ("get", "list", "watch")),
    Rule("inference.networking.k8s.io", ("inferencepools/status",), ("patch",)),
    Rule("inference.networking.x-k8s.io", ("inferencepools", "inferenceobjectives"), ("list", "watch")),
    Rule("inference.networking.x-k8s.io", ("inferencepools",), ("get",)),
    Rule("inference.networking.x-k8s.io", ("inferencepools/status",), ("patch",)),
    Rule("", ("pods", "services", "namespaces"), ("list", "watch")),
)

# In the router's own namespace (a Role): the leader election Lease.
NAMESPACE_RULES: tuple[Rule, ...] = (
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)

# Only with --api-keys-secret NAMESPACE/NAME (`auth/secret.py`), in that namespace, for that one Secret: a Role
# with `resourceNames: [NAME]` grants it, since the Secret is always listed and watched with the field
# selector `metadata.name=NAME`. Not in the default RBAC of deploy/: the router reads no Secret otherwise.
API_KEYS_SECRET_RULES: tuple[Rule, ...] = (
    Rule("", ("secrets",), ("list", "watch")),
)

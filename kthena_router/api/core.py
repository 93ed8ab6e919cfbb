"""Core kinds the router reads: Pod (only what makes an endpoint), Namespace (labels for selectors) and
Service (only its name: whether an InferencePool's endpointPickerRef exists)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kthena_router.api.meta import FieldReader, Metadata, parse_metadata

ENGINE_LABEL = "inference.networking.k8s.io/engine-type"


@dataclass(frozen=True, slots=True)
class Pod:
    meta: Metadata
    pod_ip: str
    ready: bool

    kind = "Pod"

    @property
    def is_endpoint(self) -> bool:
        """Ready, addressed and not being deleted: the only pods that receive traffic."""
        return self.ready and bool(self.pod_ip) and self.meta.deletion_timestamp is None

    @property
    def engine(self) -> str:
        return self.meta.labels.get(ENGINE_LABEL, "vllm")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Pod:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        status = r.mapping(raw.get("status"), "status")
        ready = False
        for i, cond in enumerate(r.seq(status.get("conditions"), "status.conditions")):
            cond = r.mapping(cond, f"status.conditions[{i}]")
            if cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
        return cls(meta, r.string(status.get("podIP"), "status.podIP"), ready)


@dataclass(frozen=True, slots=True)
class Namespace:
    meta: Metadata

    kind = "Namespace"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Namespace:
        meta = parse_metadata(cls.kind, raw, namespaced=False)
        # The API server always labels a namespace with its own name.
        labels = {"kubernetes.io/metadata.name": meta.name, **meta.labels}
        return cls(Metadata(meta.namespace, meta.name, meta.generation, meta.creation_timestamp,
                            meta.resource_version, meta.uid, labels, meta.annotations, meta.deletion_timestamp))


@dataclass(frozen=True, slots=True)
class Service:
    """A Service, known only by name: reconcile checks that an endpointPickerRef names one that exists."""

    meta: Metadata

    kind = "Service"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Service:
        meta = parse_metadata(cls.kind, raw)
        return cls(Metadata(meta.namespace, meta.name, meta.generation, meta.creation_timestamp,
                            meta.resource_version, meta.uid))

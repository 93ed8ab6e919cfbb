"""InferenceObjective (`inference.networking.x-k8s.io/v1alpha2`): a named request priority for a pool."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kthena_router.api.meta import INFERENCE_GROUP, FieldReader, Metadata, parse_metadata


@dataclass(frozen=True, slots=True)
class InferenceObjective:
    meta: Metadata
    priority: int  # unset means 0; negative means sheddable
    pool_group: str
    pool_kind: str
    pool_name: str

    kind = "InferenceObjective"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InferenceObjective:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        pool = r.mapping(spec.get("poolRef"), "spec.poolRef", required=True)
        return cls(
            meta,
            priority=r.integer(spec.get("priority"), "spec.priority", default=0),
            pool_group=r.string(pool.get("group"), "spec.poolRef.group", default=INFERENCE_GROUP),
            pool_kind=r.string(pool.get("kind"), "spec.poolRef.kind", default="InferencePool"),
            pool_name=r.string(pool.get("name"), "spec.poolRef.name", required=True),
        )

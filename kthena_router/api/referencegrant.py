"""ReferenceGrant (`gateway.networking.k8s.io/v1beta1`): lets objects in other namespaces refer to this one's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kthena_router.api.meta import FieldReader, Metadata, parse_metadata


@dataclass(frozen=True, slots=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True, slots=True)
class GrantTo:
    group: str
    kind: str
    name: str | None


@dataclass(frozen=True, slots=True)
class ReferenceGrant:
    meta: Metadata
    from_: tuple[GrantFrom, ...]
    to: tuple[GrantTo, ...]

    kind = "ReferenceGrant"

    def permits(self, from_group: str, from_kind: str, from_namespace: str,
                to_group: str, to_kind: str, to_name: str) -> bool:
        """Whether this grant (in the target's namespace) allows that reference."""
        return any(f.group == from_group and f.kind == from_kind and f.namespace == from_namespace
                   for f in self.from_) and any(
            t.group == to_group and t.kind == to_kind and (t.name is None or t.name == to_name)
            for t in self.to)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReferenceGrant:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        froms = []
        for i, item in enumerate(r.seq(spec.get("from"), "spec.from", required=True, max_items=16)):
            item = r.mapping(item, f"spec.from[{i}]")
            froms.append(GrantFrom(r.string(item.get("group"), f"spec.from[{i}].group"),
                                   r.string(item.get("kind"), f"spec.from[{i}].kind", required=True),
                                   r.string(item.get("namespace"), f"spec.from[{i}].namespace", required=True)))
        tos = []
        for i, item in enumerate(r.seq(spec.get("to"), "spec.to", required=True, max_items=16)):
            item = r.mapping(item, f"spec.to[{i}]")
            tos.append(GrantTo(r.string(item.get("group"), f"spec.to[{i}].group"),
                               r.string(item.get("kind"), f"spec.to[{i}].kind", required=True),
                               r.optional_string(item.get("name"), f"spec.to[{i}].name")))
        return cls(meta, tuple(froms), tuple(tos))

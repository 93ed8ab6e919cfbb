"""Shared pieces of every resource: object references, metadata, label selectors, conditions, errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

GATEWAY_GROUP = "gateway.networking.k8s.io"
INFERENCE_GROUP = "inference.networking.k8s.io"
INFERENCE_X_GROUP = "inference.networking.x-k8s.io"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


class ObjectRef(NamedTuple):
    """A namespaced object's key. Cluster-scoped objects use an empty namespace."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class InvalidResource(ValueError):
    """A manifest that cannot be used, with the field at fault."""

    def __init__(self, kind: str, ref: ObjectRef | None, field_path: str, reason: str) -> None:
        self.kind = kind
        self.ref = ref
        self.field_path = field_path
        self.reason = reason
        where = f"{kind} {ref}" if ref else kind
        super().__init__(f"{where}: {field_path}: {reason}")


@dataclass(frozen=True, slots=True)
class Metadata:
    namespace: str
    name: str
    generation: int = 0
    creation_timestamp: str = ""
    resource_version: str = ""
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deletion_timestamp: str | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Condition:
    """A status condition without its transition time (the writer adds clocks)."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    observed_generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
        }


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels ANDed with matchExpressions)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)


# --- helpers used by the per-kind parsers -------------------------------------------------------------


class FieldReader:
    """Reads typed fields from a raw dict and raises InvalidResource naming the path on a bad one."""

    __slots__ = ("kind", "ref")

    def __init__(self, kind: str, ref: ObjectRef | None) -> None:
        self.kind = kind
        self.ref = ref

    def fail(self, path: str, reason: str) -> InvalidResource:
        return InvalidResource(self.kind, self.ref, path, reason)

    def mapping(self, obj: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
        if obj is None:
            if required:
                raise self.fail(path, "required")
            return {}
        if not isinstance(obj, Mapping):
            raise self.fail(path, f"must be an object, got {type(obj).__name__}")
        return obj

    def seq(self, obj: Any, path: str, *, required: bool = False, max_items: int | None = None) -> list[Any]:
        if obj is None:
            if required:
                raise self.fail(path, "required")
            return []
        if not isinstance(obj, list):
            raise self.fail(path, f"must be a list, got {type(obj).__name__}")
        if max_items is not None and len(obj) > max_items:
            raise self.fail(path, f"at most {max_items} items allowed, got {len(obj)}")
        return obj

    def string(self, obj: Any, path: str, *, required: bool = False, default: str = "") -> str:
        if obj is None:
            if required:
                raise self.fail(path, "required")
            return default
        if not isinstance(obj, str):
            raise self.fail(path, f"must be a string, got {type(obj).__name__}")
        if required and not obj:
            raise self.fail(path, "must not be empty")
        return obj

    def optional_string(self, obj: Any, path: str) -> str | None:
        if obj is None:
            return None
        return self.string(obj, path)

    def integer(self, obj: Any, path: str, *, required: bool = False, default: int = 0,
                minimum: int | None = None, maximum: int | None = None) -> int:
        if obj is None:
            if required:
                raise self.fail(path, "required")
            return default
        if isinstance(obj, bool) or not isinstance(obj, int):
            raise self.fail(path, f"must be an integer, got {type(obj).__name__}")
        if minimum is not None and obj < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {obj}")
        if maximum is not None and obj > maximum:
            raise self.fail(path, f"must be <= {maximum}, got {obj}")
        return obj

    def optional_integer(self, obj: Any, path: str, *, minimum: int | None = None,
                         maximum: int | None = None) -> int | None:
        if obj is None:
            return None
        return self.integer(obj, path, minimum=minimum, maximum=maximum)

    def enum(self, obj: Any, path: str, allowed: tuple[str, ...], *, default: str | None = None) -> str:
        if obj is None:
            if default is None:
                raise self.fail(path, "required")
            return default
        if obj not in allowed:
            raise self.fail(path, f"must be one of {', '.join(allowed)}, got {obj!r}")
        return obj

    def string_map(self, obj: Any, path: str) -> dict[str, str]:
        raw = self.mapping(obj, path)
        out: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.fail(path, f"key {key!r} must be a string")
            if not isinstance(value, str):
                raise self.fail(f"{path}.{key}", f"must be a string, got {type(value).__name__}")
            out[key] = value
        return out

    def label_map(self, obj: Any, path: str) -> dict[str, str]:
        out = self.string_map(obj, path)
        for key, value in out.items():
            check_label_key(self, key, f"{path}.{key}")
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise self.fail(f"{path}.{key}", f"invalid label value {value!r}")
        return out

    def label_selector(self, obj: Any, path: str) -> LabelSelector:
        raw = self.mapping(obj, path)
        labels = self.label_map(raw.get("matchLabels"), f"{path}.matchLabels")
        reqs = []
        for i, item in enumerate(self.seq(raw.get("matchExpressions"), f"{path}.matchExpressions")):
            p = f"{path}.matchExpressions[{i}]"
            item = self.mapping(item, p)
            key = self.string(item.get("key"), f"{p}.key", required=True)
            op = self.enum(item.get("operator"), f"{p}.operator", ("In", "NotIn", "Exists", "DoesNotExist"))
            values = tuple(self.string(v, f"{p}.values[{j}]") for j, v in
                           enumerate(self.seq(item.get("values"), f"{p}.values")))
            if op in ("In", "NotIn") and not values:
                raise self.fail(f"{p}.values", f"must be non-empty for operator {op}")
            if op in ("Exists", "DoesNotExist") and values:
                raise self.fail(f"{p}.values", f"must be empty for operator {op}")
            reqs.append(LabelRequirement(key, op, values))
        return LabelSelector(tuple(sorted(labels.items())), tuple(reqs))


def check_label_key(reader: FieldReader, key: str, path: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise reader.fail(path, f"invalid label key prefix {prefix!r}")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise reader.fail(path, f"invalid label key {key!r}")


def parse_metadata(kind: str, raw: Mapping[str, Any], *, namespaced: bool = True) -> Metadata:
    reader = FieldReader(kind, None)
    meta = reader.mapping(raw.get("metadata"), "metadata", required=True)
    name = reader.string(meta.get("name"), "metadata.name", required=True)
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise reader.fail("metadata.name", f"invalid name {name!r} (must be a lower-case DNS subdomain)")
    namespace = ""
    if namespaced:
        namespace = reader.string(meta.get("namespace"), "metadata.namespace", default="default") or "default"
        if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
            raise reader.fail("metadata.namespace", f"invalid namespace {namespace!r}")
    reader.ref = ObjectRef(namespace, name)
    generation = meta.get("generation")
    created = meta.get("creationTimestamp")
    return Metadata(
        namespace=namespace,
        name=name,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
        creation_timestamp=_timestamp(created),
        resource_version=str(meta.get("resourceVersion") or ""),
        uid=str(meta.get("uid") or ""),
        labels=reader.string_map(meta.get("labels"), "metadata.labels"),
        annotations=reader.string_map(meta.get("annotations"), "metadata.annotations"),
        deletion_timestamp=str(meta["deletionTimestamp"]) if meta.get("deletionTimestamp") else None,
    )


def _timestamp(value: Any) -> str:
    """RFC 3339 text for a timestamp that YAML may already have turned into a datetime."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))

"""Parsed, validated Kubernetes resource types.

Raw dicts (from YAML files or the Kubernetes API) become frozen dataclasses here, at the edge; nothing past
`sources/` sees a raw dict. Each kind has a `from_dict` that raises `InvalidResource` naming the field.
"""

from kthena_router.api.meta import Condition, InvalidResource, LabelSelector, Metadata, ObjectRef
from kthena_router.api.parse import KINDS, Resource, UnknownKind, parse_resource

__all__ = [
    "KINDS",
    "Condition",
    "InvalidResource",
    "LabelSelector",
    "Metadata",
    "ObjectRef",
    "Resource",
    "UnknownKind",
    "parse_resource",
]

"""InferencePool: `inference.networking.k8s.io/v1`, and `inference.networking.x-k8s.io/v1alpha2` read into
the same type (flat `selector`, `targetPortNumber`, `extensionRef`).

The annotation `kthena.io/scheduler-config` is kept as text: reconcile validates it, so a bad one makes the
pool fall back to the router's scheduler (with a status condition saying why) instead of rejecting the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kthena_router.api.meta import FieldReader, LabelSelector, Metadata, parse_metadata

MAX_TARGET_PORTS = 8
# Inline scheduler YAML in the shape of --scheduler-config, overriding the router's scheduler for this pool.
SCHEDULER_CONFIG_ANNOTATION = "kthena.io/scheduler-config"


@dataclass(frozen=True, slots=True)
class EndpointPickerRef:
    group: str
    kind: str
    name: str
    port: int | None
    failure_mode: Literal["FailOpen", "FailClose"]


@dataclass(frozen=True, slots=True)
class InferencePool:
    meta: Metadata
    selector: LabelSelector  # matchLabels only
    target_ports: tuple[int, ...]
    app_protocol: str
    endpoint_picker_ref: EndpointPickerRef | None
    api_version: str

    kind = "InferencePool"

    @property
    def scheduler_config(self) -> str | None:
        """The text of the `kthena.io/scheduler-config` annotation, None when absent."""
        return self.meta.annotations.get(SCHEDULER_CONFIG_ANNOTATION)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InferencePool:
        if str(raw.get("apiVersion", "")).endswith("/v1alpha2"):
            return cls._from_v1alpha2(raw)
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        sel = r.mapping(spec.get("selector"), "spec.selector", required=True)
        labels = r.label_map(sel.get("matchLabels"), "spec.selector.matchLabels")
        if not labels:
            raise r.fail("spec.selector.matchLabels", "at least one label is required")
        if len(labels) > 64:
            raise r.fail("spec.selector.matchLabels", "at most 64 labels allowed")
        ports = []
        raw_ports = r.seq(spec.get("targetPorts"), "spec.targetPorts", required=True, max_items=MAX_TARGET_PORTS)
        if not raw_ports:
            raise r.fail("spec.targetPorts", "at least one port is required")
        for i, item in enumerate(raw_ports):
            item = r.mapping(item, f"spec.targetPorts[{i}]")
            number = r.integer(item.get("number"), f"spec.targetPorts[{i}].number", required=True,
                               minimum=1, maximum=65535)
            if number in ports:
                raise r.fail(f"spec.targetPorts[{i}].number", "port number must be unique")
            ports.append(number)
        app_protocol = r.enum(spec.get("appProtocol"), "spec.appProtocol", ("http", "kubernetes.io/h2c"),
                              default="http")
        epp = None
        raw_epp = spec.get("endpointPickerRef")
        if raw_epp is not None:
            raw_epp = r.mapping(raw_epp, "spec.endpointPickerRef")
            kind = r.string(raw_epp.get("kind"), "spec.endpointPickerRef.kind", default="Service")
            port_obj = r.mapping(raw_epp.get("port"), "spec.endpointPickerRef.port")
            port = r.optional_integer(port_obj.get("number"), "spec.endpointPickerRef.port.number",
                                      minimum=1, maximum=65535)
            if kind == "Service" and port is None:
                raise r.fail("spec.endpointPickerRef.port", "port is required when kind is 'Service'")
            epp = EndpointPickerRef(
                group=r.string(raw_epp.get("group"), "spec.endpointPickerRef.group", default=""),
                kind=kind,
                name=r.string(raw_epp.get("name"), "spec.endpointPickerRef.name", required=True),
                port=port,
                failure_mode=r.enum(raw_epp.get("failureMode"), "spec.endpointPickerRef.failureMode",  # type: ignore[arg-type]
                                    ("FailOpen", "FailClose"), default="FailClose"),
            )
        return cls(meta, LabelSelector(tuple(sorted(labels.items()))), tuple(ports), app_protocol, epp,
                   str(raw.get("apiVersion")))

    @classmethod
    def _from_v1alpha2(cls, raw: Mapping[str, Any]) -> InferencePool:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        labels = r.label_map(spec.get("selector"), "spec.selector")
        if not labels:
            raise r.fail("spec.selector", "at least one label is required")
        port = r.integer(spec.get("targetPortNumber"), "spec.targetPortNumber", required=True,
                         minimum=1, maximum=65535)
        epp = None
        raw_ext = spec.get("extensionRef")
        if raw_ext is not None:
            raw_ext = r.mapping(raw_ext, "spec.extensionRef")
            epp = EndpointPickerRef(
                group=r.string(raw_ext.get("group"), "spec.extensionRef.group", default=""),
                kind=r.string(raw_ext.get("kind"), "spec.extensionRef.kind", default="Service"),
                name=r.string(raw_ext.get("name"), "spec.extensionRef.name", required=True),
                port=r.integer(raw_ext.get("portNumber"), "spec.extensionRef.portNumber", default=9002,
                               minimum=1, maximum=65535),
                failure_mode=r.enum(raw_ext.get("failureMode"), "spec.extensionRef.failureMode",  # type: ignore[arg-type]
                                    ("FailOpen", "FailClose"), default="FailClose"),
            )
        return cls(meta, LabelSelector(tuple(sorted(labels.items()))), (port,), "http", epp,
                   str(raw.get("apiVersion")))

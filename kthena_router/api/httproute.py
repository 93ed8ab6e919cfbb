"""HTTPRoute (`gateway.networking.k8s.io/v1`): parent refs, hostnames, rules, matches, filters, backends."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kthena_router.api.hostnames import check_hostname
from kthena_router.api.meta import GATEWAY_GROUP, FieldReader, Metadata, parse_metadata

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]
ValueType = Literal["Exact", "RegularExpression"]
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
FILTER_TYPES = (
    "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite",
    "RequestMirror", "CORS", "ExternalAuth", "ExtensionRef",
)
SUPPORTED_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


def parse_duration(value: str) -> float | None:
    """Seconds in a GEP-2257 duration (`1h2m3s`, `500ms`), or None when malformed."""
    if not _DURATION.match(value):
        return None
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


@dataclass(frozen=True, slots=True)
class ParentRef:
    group: str
    kind: str
    namespace: str  # defaulted to the route's namespace
    name: str
    section_name: str | None
    port: int | None


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: PathType
    value: str


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    type: ValueType
    name: str  # as written; matching is case-insensitive
    value: str


@dataclass(frozen=True, slots=True)
class QueryParamMatch:
    type: ValueType
    name: str  # case-sensitive
    value: str


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: PathMatch
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None


DEFAULT_MATCH = RouteMatch(PathMatch("PathPrefix", "/"))


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathModifier:
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    value: str


@dataclass(frozen=True, slots=True)
class URLRewrite:
    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True, slots=True)
class RequestRedirect:
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class Filter:
    type: str
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    url_rewrite: URLRewrite | None = None
    request_redirect: RequestRedirect | None = None


@dataclass(frozen=True, slots=True)
class BackendRef:
    group: str
    kind: str
    namespace: str  # defaulted to the route's namespace
    name: str
    port: int | None
    weight: int
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; None when unspecified, 0.0 when disabled by "0s"."""

    request: float | None = None
    backend_request: float | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str | None
    matches: tuple[RouteMatch, ...]
    filters: tuple[Filter, ...]
    backend_refs: tuple[BackendRef, ...]
    timeouts: Timeouts


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    meta: Metadata
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[Rule, ...]

    kind = "HTTPRoute"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HTTPRoute:
        meta = parse_metadata(cls.kind, raw)
        r = FieldReader(cls.kind, meta.ref)
        spec = r.mapping(raw.get("spec"), "spec", required=True)
        parents = tuple(
            _parent_ref(r, item, f"spec.parentRefs[{i}]", meta.namespace)
            for i, item in enumerate(r.seq(spec.get("parentRefs"), "spec.parentRefs", max_items=32))
        )
        hostnames = []
        for i, item in enumerate(r.seq(spec.get("hostnames"), "spec.hostnames", max_items=16)):
            host = r.string(item, f"spec.hostnames[{i}]", required=True)
            problem = check_hostname(host)
            if problem:
                raise r.fail(f"spec.hostnames[{i}]", problem)
            hostnames.append(host.lower())
        raw_rules = r.seq(spec.get("rules"), "spec.rules", max_items=16)
        if not raw_rules:
            raw_rules = [{}]  # the API server defaults to one rule matching PathPrefix "/"
        rules = tuple(_rule(r, item, f"spec.rules[{i}]", meta.namespace) for i, item in enumerate(raw_rules))
        total = sum(len(rule.matches) for rule in rules)
        if total > 128:
            raise r.fail("spec.rules", f"at most 128 matches across all rules, got {total}")
        return cls(meta, parents, tuple(hostnames), rules)


def _parent_ref(r: FieldReader, raw: Any, path: str, namespace: str) -> ParentRef:
    raw = r.mapping(raw, path)
    return ParentRef(
        group=r.string(raw.get("group"), f"{path}.group", default=GATEWAY_GROUP),
        kind=r.string(raw.get("kind"), f"{path}.kind", default="Gateway"),
        namespace=r.string(raw.get("namespace"), f"{path}.namespace", default=namespace) or namespace,
        name=r.string(raw.get("name"), f"{path}.name", required=True),
        section_name=r.optional_string(raw.get("sectionName"), f"{path}.sectionName"),
        port=r.optional_integer(raw.get("port"), f"{path}.port", minimum=1, maximum=65535),
    )


def _rule(r: FieldReader, raw: Any, path: str, namespace: str) -> Rule:
    raw = r.mapping(raw, path)
    name = r.optional_string(raw.get("name"), f"{path}.name")
    raw_matches = r.seq(raw.get("matches"), f"{path}.matches", max_items=64)
    matches = tuple(_match(r, m, f"{path}.matches[{i}]") for i, m in enumerate(raw_matches)) or (DEFAULT_MATCH,)
    filters = _filters(r, raw.get("filters"), f"{path}.filters")
    kinds = [f.type for f in filters]
    if "RequestRedirect" in kinds and "URLRewrite" in kinds:
        raise r.fail(f"{path}.filters", "RequestRedirect and URLRewrite cannot be used together")
    backends = tuple(
        _backend_ref(r, b, f"{path}.backendRefs[{i}]", namespace)
        for i, b in enumerate(r.seq(raw.get("backendRefs"), f"{path}.backendRefs", max_items=16))
    )
    if "RequestRedirect" in kinds and backends:
        raise r.fail(f"{path}.filters", "RequestRedirect cannot be used with backendRefs")
    for f in filters:
        mod = f.url_rewrite.path if f.url_rewrite else f.request_redirect.path if f.request_redirect else None
        if mod is not None and mod.type == "ReplacePrefixMatch":
            if len(matches) != 1 or matches[0].path.type != "PathPrefix":
                raise r.fail(f"{path}.filters",
                             "ReplacePrefixMatch requires exactly one match with a PathPrefix path")
    timeouts = _timeouts(r, raw.get("timeouts"), f"{path}.timeouts")
    return Rule(name, matches, filters, backends, timeouts)


def _match(r: FieldReader, raw: Any, path: str) -> RouteMatch:
    raw = r.mapping(raw, path)
    raw_path = r.mapping(raw.get("path"), f"{path}.path")
    ptype = r.enum(raw_path.get("type"), f"{path}.path.type", ("Exact", "PathPrefix", "RegularExpression"),
                   default="PathPrefix")
    pvalue = r.string(raw_path.get("value"), f"{path}.path.value", default="/")
    if ptype == "RegularExpression":
        _check_regex(r, pvalue, f"{path}.path.value")
    else:
        if not pvalue.startswith("/"):
            raise r.fail(f"{path}.path.value", "must start with '/'")
        if "//" in pvalue or "/./" in pvalue or "/../" in pvalue or pvalue.endswith(("/..", "/.")) \
                or "%2f" in pvalue.lower() or "#" in pvalue or "?" in pvalue:
            raise r.fail(f"{path}.path.value", f"invalid path {pvalue!r}")
    headers = []
    seen: set[str] = set()
    for i, item in enumerate(r.seq(raw.get("headers"), f"{path}.headers", max_items=16)):
        p = f"{path}.headers[{i}]"
        item = r.mapping(item, p)
        htype = r.enum(item.get("type"), f"{p}.type", ("Exact", "RegularExpression"), default="Exact")
        hname = r.string(item.get("name"), f"{p}.name", required=True)
        if not _HEADER_NAME.match(hname):
            raise r.fail(f"{p}.name", f"invalid header name {hname!r}")
        hvalue = r.string(item.get("value"), f"{p}.value", required=True)
        if htype == "RegularExpression":
            _check_regex(r, hvalue, f"{p}.value")
        if hname.lower() in seen:
            continue  # the spec: the first entry with an equivalent name wins
        seen.add(hname.lower())
        headers.append(HeaderMatch(htype, hname, hvalue))
    params = []
    seen_params: set[str] = set()
    for i, item in enumerate(r.seq(raw.get("queryParams"), f"{path}.queryParams", max_items=16)):
        p = f"{path}.queryParams[{i}]"
        item = r.mapping(item, p)
        qtype = r.enum(item.get("type"), f"{p}.type", ("Exact", "RegularExpression"), default="Exact")
        qname = r.string(item.get("name"), f"{p}.name", required=True)
        qvalue = r.string(item.get("value"), f"{p}.value", required=True)
        if qtype == "RegularExpression":
            _check_regex(r, qvalue, f"{p}.value")
        if qname in seen_params:
            continue
        seen_params.add(qname)
        params.append(QueryParamMatch(qtype, qname, qvalue))
    method = raw.get("method")
    if method is not None:
        method = r.enum(method, f"{path}.method", METHODS)
    return RouteMatch(PathMatch(ptype, pvalue), tuple(headers), tuple(params), method)


def _check_regex(r: FieldReader, pattern: str, path: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise r.fail(path, f"invalid regular expression: {exc}") from None


def _filters(r: FieldReader, raw: Any, path: str) -> tuple[Filter, ...]:
    out = []
    once: set[str] = set()
    for i, item in enumerate(r.seq(raw, path, max_items=16)):
        p = f"{path}[{i}]"
        item = r.mapping(item, p)
        ftype = r.enum(item.get("type"), f"{p}.type", FILTER_TYPES)
        if ftype in SUPPORTED_FILTERS:
            if ftype in once:
                raise r.fail(f"{p}.type", f"{ftype} may appear at most once")
            once.add(ftype)
        if ftype == "RequestHeaderModifier":
            out.append(Filter(ftype, request_header_modifier=_header_modifier(
                r, item.get("requestHeaderModifier"), f"{p}.requestHeaderModifier")))
        elif ftype == "ResponseHeaderModifier":
            out.append(Filter(ftype, response_header_modifier=_header_modifier(
                r, item.get("responseHeaderModifier"), f"{p}.responseHeaderModifier")))
        elif ftype == "URLRewrite":
            raw_rw = r.mapping(item.get("urlRewrite"), f"{p}.urlRewrite", required=True)
            host = r.optional_string(raw_rw.get("hostname"), f"{p}.urlRewrite.hostname")
            out.append(Filter(ftype, url_rewrite=URLRewrite(
                host, _path_modifier(r, raw_rw.get("path"), f"{p}.urlRewrite.path"))))
        elif ftype == "RequestRedirect":
            raw_rd = r.mapping(item.get("requestRedirect"), f"{p}.requestRedirect", required=True)
            scheme = raw_rd.get("scheme")
            if scheme is not None:
                scheme = r.enum(scheme, f"{p}.requestRedirect.scheme", ("http", "https"))
            status = raw_rd.get("statusCode")
            out.append(Filter(ftype, request_redirect=RequestRedirect(
                scheme=scheme,
                hostname=r.optional_string(raw_rd.get("hostname"), f"{p}.requestRedirect.hostname"),
                path=_path_modifier(r, raw_rd.get("path"), f"{p}.requestRedirect.path"),
                port=r.optional_integer(raw_rd.get("port"), f"{p}.requestRedirect.port", minimum=1,
                                        maximum=65535),
                status_code=302 if status is None else int(r.enum(
                    status, f"{p}.requestRedirect.statusCode", (301, 302, 303, 307, 308))),  # type: ignore[arg-type]
            )))
        else:
            out.append(Filter(ftype))  # unsupported: reconcile reports it on the route's status
    return tuple(out)


def _header_modifier(r: FieldReader, raw: Any, path: str) -> HeaderModifier:
    raw = r.mapping(raw, path, required=True)

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        out = []
        for i, item in enumerate(r.seq(raw.get(key), f"{path}.{key}", max_items=16)):
            item = r.mapping(item, f"{path}.{key}[{i}]")
            name = r.string(item.get("name"), f"{path}.{key}[{i}].name", required=True)
            if not _HEADER_NAME.match(name):
                raise r.fail(f"{path}.{key}[{i}].name", f"invalid header name {name!r}")
            out.append((name, r.string(item.get("value"), f"{path}.{key}[{i}].value")))
        return tuple(out)

    remove = tuple(r.string(v, f"{path}.remove[{i}]", required=True)
                   for i, v in enumerate(r.seq(raw.get("remove"), f"{path}.remove", max_items=16)))
    return HeaderModifier(pairs("set"), pairs("add"), remove)


def _path_modifier(r: FieldReader, raw: Any, path: str) -> PathModifier | None:
    if raw is None:
        return None
    raw = r.mapping(raw, path)
    mtype = r.enum(raw.get("type"), f"{path}.type", ("ReplaceFullPath", "ReplacePrefixMatch"))
    key = "replaceFullPath" if mtype == "ReplaceFullPath" else "replacePrefixMatch"
    value = r.string(raw.get(key), f"{path}.{key}", required=True)
    if not value.startswith("/"):
        raise r.fail(f"{path}.{key}", "must start with '/'")
    return PathModifier(mtype, value)  # type: ignore[arg-type]


def _backend_ref(r: FieldReader, raw: Any, path: str, namespace: str) -> BackendRef:
    raw = r.mapping(raw, path)
    return BackendRef(
        group=r.string(raw.get("group"), f"{path}.group", default=""),
        kind=r.string(raw.get("kind"), f"{path}.kind", default="Service"),
        namespace=r.string(raw.get("namespace"), f"{path}.namespace", default=namespace) or namespace,
        name=r.string(raw.get("name"), f"{path}.name", required=True),
        port=r.optional_integer(raw.get("port"), f"{path}.port", minimum=1, maximum=65535),
        weight=r.integer(raw.get("weight"), f"{path}.weight", default=1, minimum=0, maximum=1_000_000),
        filters=_filters(r, raw.get("filters"), f"{path}.filters"),
    )


def _timeouts(r: FieldReader, raw: Any, path: str) -> Timeouts:
    raw = r.mapping(raw, path)

    def one(key: str) -> float | None:
        value = r.optional_string(raw.get(key), f"{path}.{key}")
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds is None:
            raise r.fail(f"{path}.{key}", f"invalid duration {value!r} (e.g. 500ms, 10s, 1h)")
        return seconds

    request, backend = one("request"), one("backendRequest")
    if request and backend and backend > request:
        raise r.fail(f"{path}.backendRequest", "must be <= request unless request is 0s")
    return Timeouts(request, backend)

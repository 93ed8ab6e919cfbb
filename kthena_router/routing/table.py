"""The HTTPRoute match table of one listener: compiled once in reconcile, looked up once per request.

Reconcile hands `compile_routes` the routes attached to a listener (each with its effective hostnames and
compiled rules); the request path calls `RouteTable.match` with the request's host, method, path, query,
headers and body `model`. Nothing here runs I/O, sorts, or compiles a regex per request: every match is
turned into a `_Candidate` once, ranked once, and put in an index.

Precedence, exactly as the Gateway API orders it (HTTPRouteRule.matches and HTTPRouteSpec.hostnames):

1. Hostname: routes whose effective hostnames contain the request host exactly, then routes with a
   wildcard hostname covering it, longest suffix first, then routes without hostnames. A less specific
   group is only consulted when nothing in the more specific one matches.
2. Path: `Exact`, then `RegularExpression`, then `PathPrefix` with the most characters first. Where a
   regular expression ranks is implementation-specific; here it ranks after every `Exact` match and before
   every `PathPrefix` match, longer patterns first. A regex is written to say something more precise than
   a prefix, so it should not lose to `PathPrefix /`.
3. A match that names a method, then the most header matches, then the most query-param matches.
4. The oldest route by creationTimestamp (an empty timestamp sorts first), then "namespace/name"
   alphabetically, then rule index, then match index.

Match semantics: `Exact` paths compare case-sensitively (`/abc` is not `/abc/`). `PathPrefix` compares
whole path elements and ignores a trailing `/` (`/abc` matches `/abc`, `/abc/`, `/abc/def`, not `/abcd`).
Regular expressions (paths, headers and query values) must match the whole value (`re.fullmatch`).
Header names are case-insensitive and the first value is compared; query-param names are case-sensitive
and the first value is compared. A header match on `X-Gateway-Model-Name` compares against the body's
`model` when the request has one.

Lookup cost: `Exact` paths are a dict hit; `PathPrefix` matches are bucketed by their prefix, and a lookup
walks the request path backwards one segment at a time through dict hits, testing only the candidates in
those buckets. Regular expressions cannot be indexed, so they are the one linear scan (per host group).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy

from kthena_router.api.httproute import HeaderModifier, HTTPRoute, RouteMatch
from kthena_router.snapshot import Backend, CompiledRule, RouteMatchResult

MODEL_HEADER = "x-gateway-model-name"

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One HTTPRoute as attached to one listener."""

    route: HTTPRoute  # for precedence: creation_timestamp, namespace/name
    hostnames: tuple[str, ...]  # effective hostnames after intersection with the listener; () = any host
    rules: tuple[CompiledRule, ...]  # index-aligned with route.rules


class _ValueTest:
    """One header or query-param condition, ready to evaluate."""

    __slots__ = ("name", "exact", "regex", "is_model")

    def __init__(self, name: str, value_type: str, value: str, *, is_model: bool = False) -> None:
        self.name = name
        self.exact = value if value_type == "Exact" else None
        self.regex = re.compile(value) if value_type == "RegularExpression" else None
        self.is_model = is_model

    def accepts(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        assert self.regex is not None
        return self.regex.fullmatch(value) is not None


class _Candidate:
    """One match of one rule, with its precedence key and its non-path conditions compiled."""

    __slots__ = ("rule", "path", "route_name", "match_index", "method", "headers", "query", "regex", "key",
                 "match")

    def __init__(self, entry: RouteEntry, rule: CompiledRule, match: RouteMatch, match_index: int) -> None:
        meta = entry.route.meta
        self.rule = rule
        self.match = match
        self.path = match.path
        self.route_name = f"{meta.namespace}/{meta.name}"
        self.match_index = match_index
        self.method = match.method
        self.headers = tuple(
            _ValueTest(h.name.lower(), h.type, h.value, is_model=h.name.lower() == MODEL_HEADER)
            for h in match.headers)
        self.query = tuple(_ValueTest(q.name, q.type, q.value) for q in match.query_params)
        self.regex = re.compile(match.path.value) if match.path.type == "RegularExpression" else None
        self.key = (
            _PATH_RANK[match.path.type],
            -len(match.path.value),
            0 if match.method else 1,
            -len(match.headers),
            -len(match.query_params),
            meta.creation_timestamp,
            self.route_name,
            rule.rule_index,
            match_index,
        )

    def accepts(self, method: str, query: Mapping[str, str], headers: Mapping[str, str],
                model: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        for test in self.headers:
            if test.is_model and model is not None:
                value: str | None = model
            else:
                value = headers.get(test.name)
            if not test.accepts(value):
                return False
        return all(test.accepts(query.get(test.name)) for test in self.query)


def _prefix_key(value: str) -> str:
    """The bucket of a PathPrefix value: without its trailing `/`, so `/` is the empty key."""
    return value.rstrip("/")


class _PathIndex:
    """All candidates of one hostname group, indexed by path."""

    __slots__ = ("exact", "regex", "prefix", "ordered")

    def __init__(self, candidates: list[_Candidate]) -> None:
        candidates.sort(key=lambda c: c.key)
        self.ordered = tuple(candidates)
        exact: dict[str, list[_Candidate]] = {}
        prefix: dict[str, list[_Candidate]] = {}
        regex: list[_Candidate] = []
        for c in self.ordered:
            if c.path.type == "Exact":
                exact.setdefault(c.path.value, []).append(c)
            elif c.path.type == "PathPrefix":
                prefix.setdefault(_prefix_key(c.path.value), []).append(c)
            else:
                regex.append(c)
        self.exact = {k: tuple(v) for k, v in exact.items()}
        self.prefix = {k: tuple(v) for k, v in prefix.items()}
        self.regex = tuple(regex)

    def lookup(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
               model: str | None) -> _Candidate | None:
        bucket = self.exact.get(path)
        if bucket is not None:
            for c in bucket:
                if c.accepts(method, query, headers, model):
                    return c
        for c in self.regex:
            assert c.regex is not None
            if c.regex.fullmatch(path) is not None and c.accepts(method, query, headers, model):
                return c
        if not self.prefix or not path.startswith("/"):
            return None
        # Walk the path backwards by segment: "/a/b/c" tries "/a/b/c", "/a/b", "/a", "" (the `/` prefix).
        key = path.rstrip("/")
        prefix = self.prefix
        while True:
            bucket = prefix.get(key)
            if bucket is not None:
                for c in bucket:
                    if c.accepts(method, query, headers, model):
                        return c
            if not key:
                return None
            key = key[: key.rfind("/")]


class RouteTable:
    """The routes of one listener, grouped by hostname and indexed by path. Immutable after construction."""

    __slots__ = ("_exact_hosts", "_wildcard_hosts", "_any_host")

    def __init__(self, exact_hosts: Mapping[str, _PathIndex], wildcard_hosts: Mapping[str, _PathIndex],
                 any_host: _PathIndex | None) -> None:
        self._exact_hosts = dict(exact_hosts)
        self._wildcard_hosts = dict(wildcard_hosts)  # ".suffix" -> index
        self._any_host = any_host

    def match(self, host: str, method: str, path: str, query: Mapping[str, str] | MultiDictProxy,
              headers: CIMultiDictProxy[str] | Mapping, model: str | None) -> RouteMatchResult | None:
        """The winning rule for a request, or None (404). `host` is lower-case without its port."""
        if not hasattr(headers, "getall"):  # case-insensitive views have it; plain dicts (tests) do not
            headers = CIMultiDict(headers)
        index = self._exact_hosts.get(host)
        if index is not None:
            hit = index.lookup(method, path, query, headers, model)
            if hit is not None:
                return RouteMatchResult(hit.rule, hit.path)
        if self._wildcard_hosts:
            # "a.b.example.com" tries ".b.example.com", ".example.com", ".com": the longest suffix first.
            dot = host.find(".", 1)
            while dot != -1:
                index = self._wildcard_hosts.get(host[dot:])
                if index is not None:
                    hit = index.lookup(method, path, query, headers, model)
                    if hit is not None:
                        return RouteMatchResult(hit.rule, hit.path)
                dot = host.find(".", dot + 1)
        if self._any_host is not None:
            hit = self._any_host.lookup(method, path, query, headers, model)
            if hit is not None:
                return RouteMatchResult(hit.rule, hit.path)
        return None

    def groups(self) -> list[tuple[str, _PathIndex]]:
        """Hostname groups in the order a lookup consults them (exact hosts alphabetically)."""
        out = [(host, self._exact_hosts[host]) for host in sorted(self._exact_hosts)]
        out.extend((f"*{suffix}", self._wildcard_hosts[suffix])
                   for suffix in sorted(self._wildcard_hosts, key=lambda s: (-len(s), s)))
        if self._any_host is not None:
            out.append(("*", self._any_host))
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Every match in precedence order within its hostname group, with its rule's outcome."""
        return [_describe(host, c) for host, index in self.groups() for c in index.ordered]


EMPTY_TABLE = RouteTable({}, {}, None)


def compile_routes(entries: Sequence[RouteEntry]) -> RouteTable:
    """Rank every match of every rule once and index them by hostname and path."""
    exact: dict[str, list[_Candidate]] = {}
    wildcard: dict[str, list[_Candidate]] = {}
    any_host: list[_Candidate] = []
    for entry in entries:
        candidates = [
            _Candidate(entry, compiled, match, j)
            for rule, compiled in zip(entry.route.rules, entry.rules, strict=True)
            for j, match in enumerate(rule.matches)
        ]
        if not entry.hostnames:
            any_host.extend(candidates)
        for hostname in dict.fromkeys(entry.hostnames):
            if hostname.startswith("*."):
                wildcard.setdefault(hostname[1:], []).extend(candidates)
            else:
                exact.setdefault(hostname, []).extend(candidates)
    return RouteTable(
        {host: _PathIndex(cs) for host, cs in exact.items()},
        {suffix: _PathIndex(cs) for suffix, cs in wildcard.items()},
        _PathIndex(any_host) if any_host else None,
    )


# --- describe -----------------------------------------------------------------------------------------


def _describe(host: str, c: _Candidate) -> dict[str, Any]:
    rule = c.rule
    out: dict[str, Any] = {
        "host": host,
        "route": c.route_name,
        "rule": rule.rule_index,
        "match": c.match_index,
        "path": f"{c.path.type} {c.path.value}",
    }
    if c.method:
        out["method"] = c.method
    if c.match.headers:
        out["headers"] = [f"{h.name} {'=' if h.type == 'Exact' else '~'} {h.value}" for h in c.match.headers]
    if c.match.query_params:
        out["queryParams"] = [f"{q.name} {'=' if q.type == 'Exact' else '~'} {q.value}"
                              for q in c.match.query_params]
    out.update(describe_rule(rule))
    return out


def describe_rule(rule: CompiledRule) -> dict[str, Any]:
    """What a matched rule does, compactly: for golden tests and the debug dump."""
    out: dict[str, Any] = {}
    if rule.error is not None:
        out["error"] = rule.error
    if rule.redirect is not None:
        r = rule.redirect
        parts = [f"{r.status_code}"]
        if r.scheme:
            parts.append(f"scheme={r.scheme}")
        if r.hostname:
            parts.append(f"hostname={r.hostname}")
        if r.port:
            parts.append(f"port={r.port}")
        if r.path:
            parts.append(f"{r.path.type}={r.path.value}")
        out["redirect"] = " ".join(parts)
    if rule.backends:
        out["backends"] = [_describe_backend(b) for b in rule.backends]
    if rule.url_rewrite is not None:
        rw = rule.url_rewrite
        parts = []
        if rw.hostname:
            parts.append(f"hostname={rw.hostname}")
        if rw.path:
            parts.append(f"{rw.path.type}={rw.path.value}")
        out["rewrite"] = " ".join(parts)
    if rule.request_headers is not None:
        out["requestHeaders"] = _describe_modifier(rule.request_headers)
    if rule.response_headers is not None:
        out["responseHeaders"] = _describe_modifier(rule.response_headers)
    timeouts = rule.timeouts
    if timeouts.request is not None or timeouts.backend_request is not None:
        out["timeouts"] = {"request": timeouts.request, "backendRequest": timeouts.backend_request}
    return out


def _describe_backend(backend: Backend) -> str:
    text = f"{backend.weight} {backend.pool}" if backend.error is None else f"{backend.weight} error: {backend.error}"
    if backend.request_headers is not None:
        text += f" requestHeaders[{'; '.join(_describe_modifier(backend.request_headers))}]"
    if backend.response_headers is not None:
        text += f" responseHeaders[{'; '.join(_describe_modifier(backend.response_headers))}]"
    return text


def _describe_modifier(modifier: HeaderModifier) -> list[str]:
    return ([f"set {n}: {v}" for n, v in modifier.set] + [f"add {n}: {v}" for n, v in modifier.add]
            + [f"remove {n}" for n in modifier.remove])


__all__ = ["EMPTY_TABLE", "MODEL_HEADER", "RouteEntry", "RouteTable", "compile_routes",
           "describe_rule"]

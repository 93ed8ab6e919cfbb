"""RouteTable: match semantics and Gateway API precedence, checked one rule at a time and against a
brute-force reference matcher over random routes and requests."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hs
from multidict import CIMultiDict, MultiDict, MultiDictProxy

from kthena_router.api.httproute import (
    HeaderMatch,
    HTTPRoute,
    PathMatch,
    QueryParamMatch,
    RouteMatch,
    Rule,
    Timeouts,
)
from kthena_router.api.meta import Metadata, ObjectRef
from kthena_router.routing import table as table_module
from kthena_router.routing.table import RouteEntry, RouteTable, compile_routes
from kthena_router.snapshot import CompiledRule

GW = ObjectRef("infra", "gw")


def make_route(name: str, rules: list[dict[str, Any]], *, namespace: str = "default", hostnames=(),
               created: str = "") -> HTTPRoute:
    raw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created or None},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": list(hostnames), "rules": rules},
    }
    return HTTPRoute.from_dict(raw)


def entry(route: HTTPRoute, hostnames: tuple[str, ...] | None = None) -> RouteEntry:
    rules = tuple(CompiledRule(route.meta.ref, i, GW, "http", ()) for i in range(len(route.rules)))
    return RouteEntry(route, route.hostnames if hostnames is None else hostnames, rules)


def table(*routes: HTTPRoute) -> RouteTable:
    return compile_routes([entry(r) for r in routes])


def hit(t: RouteTable, path: str, *, host: str = "example.com", method: str = "GET",
        headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
        model: str | None = None) -> tuple[str, int] | None:
    """(route name, rule index) of the winner, or None."""
    result = t.match(host, method, path, query or {}, CIMultiDict(headers or {}), model)
    if result is None:
        return None
    return result.rule.route.name, result.rule.rule_index


def exact(value: str) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}}


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def regex(value: str) -> dict[str, Any]:
    return {"path": {"type": "RegularExpression", "value": value}}


# --- paths ----------------------------------------------------------------------------------------------


def test_exact_path_beats_longer_prefix() -> None:
    t = table(make_route("r", [{"matches": [prefix("/one/two/three")]}, {"matches": [exact("/one/two/three")]}]))
    assert hit(t, "/one/two/three") == ("r", 1)
    assert hit(t, "/one/two/three/four") == ("r", 0)


def test_exact_path_is_case_sensitive_and_trailing_slash_matters() -> None:
    t = table(make_route("r", [{"matches": [exact("/abc")]}]))
    assert hit(t, "/abc") == ("r", 0)
    assert hit(t, "/abc/") is None
    assert hit(t, "/Abc") is None
    assert hit(t, "/abc/def") is None


def test_prefix_is_element_wise() -> None:
    t = table(make_route("r", [{"matches": [prefix("/abc")]}]))
    assert hit(t, "/abc") == ("r", 0)
    assert hit(t, "/abc/") == ("r", 0)
    assert hit(t, "/abc/def") == ("r", 0)
    assert hit(t, "/abcd") is None
    assert hit(t, "/ab") is None


def test_prefix_trailing_slash_is_ignored() -> None:
    t = table(make_route("r", [{"matches": [prefix("/abc/")]}]))
    assert hit(t, "/abc") == ("r", 0)
    assert hit(t, "/abc/def") == ("r", 0)
    assert hit(t, "/abcd") is None


def test_root_prefix_matches_every_path() -> None:
    t = table(make_route("r", [{"matches": [prefix("/")]}]))
    for path in ("/", "/a", "/a/b/", "//x"):
        assert hit(t, path) == ("r", 0)


def test_longest_prefix_wins() -> None:
    t = table(make_route("r", [{"matches": [prefix("/")]}, {"matches": [prefix("/a")]},
                               {"matches": [prefix("/a/b")]}]))
    assert hit(t, "/a/b/c") == ("r", 2)
    assert hit(t, "/a/bc") == ("r", 1)
    assert hit(t, "/b") == ("r", 0)


def test_longer_prefix_value_with_slash_beats_same_prefix_without() -> None:
    t = table(make_route("r", [{"matches": [prefix("/a")]}, {"matches": [prefix("/a/")]}]))
    assert hit(t, "/a/x") == ("r", 1)


def test_regex_ranks_between_exact_and_prefix() -> None:
    t = table(make_route("r", [{"matches": [prefix("/v1/models")]}, {"matches": [regex("/v1/.*")]},
                               {"matches": [exact("/v1/models")]}]))
    assert hit(t, "/v1/models") == ("r", 2)
    assert hit(t, "/v1/models/x") == ("r", 1)


def test_longer_regex_wins() -> None:
    t = table(make_route("r", [{"matches": [regex("/.*")]}, {"matches": [regex("/v[0-9]+/.*")]}]))
    assert hit(t, "/v1/chat") == ("r", 1)
    assert hit(t, "/other") == ("r", 0)


def test_regex_must_match_the_whole_path() -> None:
    t = table(make_route("r", [{"matches": [regex("/v1")]}]))
    assert hit(t, "/v1") == ("r", 0)
    assert hit(t, "/v1/chat") is None
    assert hit(t, "/x/v1") is None


def test_conformance_matching_is_element_wise_across_rules() -> None:
    # HTTPRouteMatching: rule 0 `/` or header version=one; rule 1 `/v2` or header version=two.
    t = table(make_route("r", [
        {"matches": [prefix("/"), {"headers": [{"name": "version", "value": "one"}]}]},
        {"matches": [prefix("/v2"), {"headers": [{"name": "version", "value": "two"}]}]},
    ]))
    assert hit(t, "/") == ("r", 0)
    assert hit(t, "/v2") == ("r", 1)
    assert hit(t, "/v2/") == ("r", 1)
    assert hit(t, "/v2example") == ("r", 0)
    assert hit(t, "/foo/v2/example") == ("r", 0)
    assert hit(t, "/", headers={"version": "two"}) == ("r", 1)


def test_conformance_path_match_order() -> None:
    # HTTPRoutePathMatchOrder, reduced: exact beats prefix; longer prefix beats shorter.
    t = table(make_route("r", [
        {"matches": [prefix("/match")]},
        {"matches": [prefix("/match/prefix/one")]},
        {"matches": [exact("/match/exact/one")]},
        {"matches": [prefix("/match/exact")]},
    ]))
    assert hit(t, "/match/exact/one") == ("r", 2)
    assert hit(t, "/match/exact/one/two") == ("r", 3)
    assert hit(t, "/match/prefix/one/any") == ("r", 1)
    assert hit(t, "/match/any") == ("r", 0)


# --- method, headers, query -----------------------------------------------------------------------------


def test_prefix_length_beats_method() -> None:
    t = table(make_route("r", [{"matches": [{**prefix("/"), "method": "POST"}]}, {"matches": [prefix("/v1")]}]))
    assert hit(t, "/v1/x", method="POST") == ("r", 1)


def test_method_beats_header_count() -> None:
    t = table(make_route("r", [
        {"matches": [{**prefix("/"), "headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}]},
        {"matches": [{**prefix("/"), "method": "POST"}]},
    ]))
    assert hit(t, "/", method="POST", headers={"a": "1", "b": "2"}) == ("r", 1)
    assert hit(t, "/", method="GET", headers={"a": "1", "b": "2"}) == ("r", 0)
    assert hit(t, "/", method="GET") is None


def test_more_header_matches_win() -> None:
    t = table(make_route("r", [
        {"matches": [{"headers": [{"name": "a", "value": "1"}]}]},
        {"matches": [{"headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}]},
    ]))
    assert hit(t, "/", headers={"a": "1", "b": "2"}) == ("r", 1)
    assert hit(t, "/", headers={"a": "1"}) == ("r", 0)


def test_header_count_beats_query_count() -> None:
    t = table(make_route("r", [
        {"matches": [{"queryParams": [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}]}]},
        {"matches": [{"headers": [{"name": "a", "value": "1"}]}]},
    ]))
    assert hit(t, "/", headers={"a": "1"}, query={"x": "1", "y": "2"}) == ("r", 1)


def test_more_query_matches_win() -> None:
    t = table(make_route("r", [
        {"matches": [{"queryParams": [{"name": "x", "value": "1"}]}]},
        {"matches": [{"queryParams": [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}]}]},
    ]))
    assert hit(t, "/", query={"x": "1", "y": "2"}) == ("r", 1)
    assert hit(t, "/", query={"x": "1"}) == ("r", 0)


def test_method_must_match_exactly() -> None:
    t = table(make_route("r", [{"matches": [{"method": "POST"}]}]))
    assert hit(t, "/", method="POST") == ("r", 0)
    assert hit(t, "/", method="HEAD") is None


def test_header_name_is_case_insensitive_and_value_case_sensitive() -> None:
    t = table(make_route("r", [{"matches": [{"headers": [{"name": "X-Version", "value": "One"}]}]}]))
    assert hit(t, "/", headers={"x-version": "One"}) == ("r", 0)
    assert hit(t, "/", headers={"X-VERSION": "One"}) == ("r", 0)
    assert hit(t, "/", headers={"x-version": "one"}) is None
    assert hit(t, "/") is None


def test_header_regex_must_match_the_whole_value() -> None:
    t = table(make_route("r", [{"matches": [{"headers": [
        {"name": "x-v", "type": "RegularExpression", "value": "v[0-9]"}]}]}]))
    assert hit(t, "/", headers={"x-v": "v1"}) == ("r", 0)
    assert hit(t, "/", headers={"x-v": "v12"}) is None


def test_first_header_value_is_compared() -> None:
    t = table(make_route("r", [{"matches": [{"headers": [{"name": "x", "value": "2"}]}]}]))
    headers = CIMultiDict([("x", "1"), ("X", "2")])
    assert t.match("h", "GET", "/", {}, headers, None) is None


def test_query_param_name_is_case_sensitive_and_first_value_counts() -> None:
    t = table(make_route("r", [{"matches": [{"queryParams": [{"name": "animal", "value": "whale"}]}]}]))
    assert hit(t, "/", query={"animal": "whale"}) == ("r", 0)
    assert hit(t, "/", query={"ANIMAL": "whale"}) is None
    assert hit(t, "/", query={"animal": "Whale"}) is None
    first = MultiDictProxy(MultiDict([("animal", "whale"), ("animal", "dolphin")]))
    assert t.match("h", "GET", "/", first, CIMultiDict(), None) is not None
    second = MultiDictProxy(MultiDict([("animal", "dolphin"), ("animal", "whale")]))
    assert t.match("h", "GET", "/", second, CIMultiDict(), None) is None


def test_matches_within_a_rule_are_ored_and_fields_anded() -> None:
    t = table(make_route("r", [{"matches": [
        {**prefix("/foo"), "headers": [{"name": "version", "value": "v2"}]},
        prefix("/v2/foo"),
    ]}]))
    assert hit(t, "/foo", headers={"version": "v2"}) == ("r", 0)
    assert hit(t, "/foo") is None
    assert hit(t, "/v2/foo") == ("r", 0)


def test_rule_without_matches_matches_every_path() -> None:
    t = table(make_route("r", [{}]))
    assert hit(t, "/anything/at/all") == ("r", 0)


def test_model_header_matches_body_model() -> None:
    t = table(make_route("r", [
        {"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": "llama"}]}]},
        {"matches": [{"headers": [{"name": "x-gateway-model-name", "value": "qwen"}]}]},
    ]))
    assert hit(t, "/v1/chat/completions", model="llama") == ("r", 0)
    assert hit(t, "/v1/chat/completions", model="qwen") == ("r", 1)
    # The body wins over a header the client sent itself.
    assert hit(t, "/", headers={"X-Gateway-Model-Name": "qwen"}, model="llama") == ("r", 0)
    assert hit(t, "/", model="mistral") is None


def test_model_header_uses_the_real_header_without_a_body_model() -> None:
    t = table(make_route("r", [{"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": "llama"}]}]}]))
    assert hit(t, "/", headers={"x-gateway-model-name": "llama"}) == ("r", 0)
    assert hit(t, "/") is None


# --- across routes --------------------------------------------------------------------------------------


def test_older_route_wins_tie() -> None:
    newer = make_route("a", [{}], created="2024-02-01T00:00:00Z")
    older = make_route("b", [{}], created="2024-01-01T00:00:00Z")
    assert hit(table(newer, older), "/") == ("b", 0)
    assert hit(table(older, newer), "/") == ("b", 0)


def test_empty_creation_timestamp_sorts_first() -> None:
    dated = make_route("a", [{}], created="2024-01-01T00:00:00Z")
    undated = make_route("b", [{}])
    assert hit(table(dated, undated), "/") == ("b", 0)


def test_namespace_name_order_breaks_a_timestamp_tie() -> None:
    created = "2024-01-01T00:00:00Z"
    r1 = make_route("zed", [{}], namespace="alpha", created=created)
    r2 = make_route("abc", [{}], namespace="beta", created=created)
    assert hit(table(r2, r1), "/") == ("zed", 0)


def test_match_precedence_beats_route_age() -> None:
    older = make_route("old", [{"matches": [prefix("/")]}], created="2020-01-01T00:00:00Z")
    newer = make_route("new", [{"matches": [prefix("/v1")]}], created="2024-01-01T00:00:00Z")
    assert hit(table(older, newer), "/v1/x") == ("new", 0)


def test_first_rule_wins_within_a_route() -> None:
    t = table(make_route("r", [{"matches": [prefix("/a")]}, {"matches": [prefix("/a")]}]))
    assert hit(t, "/a") == ("r", 0)


def test_no_match_returns_none() -> None:
    t = table(make_route("r", [{"matches": [exact("/one")]}]))
    assert hit(t, "/two") is None
    assert compile_routes([]).match("h", "GET", "/", {}, CIMultiDict(), None) is None


def test_plain_mapping_headers_are_case_insensitive() -> None:
    t = table(make_route("r", [{"matches": [{"headers": [{"name": "X-A", "value": "1"}]}]}]))
    assert t.match("h", "GET", "/", {}, {"x-a": "1"}, None) is not None


def test_match_result_carries_the_matched_path() -> None:
    t = table(make_route("r", [{"matches": [exact("/a"), prefix("/b")]}]))
    result = t.match("h", "GET", "/b/c", {}, CIMultiDict(), None)
    assert result is not None
    assert result.path == PathMatch("PathPrefix", "/b")


# --- hostnames ------------------------------------------------------------------------------------------


def hosts_table() -> RouteTable:
    return table(
        make_route("exact", [{}], hostnames=["foo.example.com"]),
        make_route("wild", [{}], hostnames=["*.example.com"]),
        make_route("longer-wild", [{}], hostnames=["*.foo.example.com"]),
        make_route("any", [{"matches": [prefix("/any")]}]),
    )


def test_exact_host_beats_wildcard_and_routes_without_hostnames() -> None:
    assert hit(hosts_table(), "/any", host="foo.example.com") == ("exact", 0)


def test_longest_wildcard_host_wins() -> None:
    t = hosts_table()
    assert hit(t, "/any", host="a.foo.example.com") == ("longer-wild", 0)
    assert hit(t, "/any", host="a.b.example.com") == ("wild", 0)


def test_wildcard_does_not_match_the_bare_domain() -> None:
    t = table(make_route("wild", [{}], hostnames=["*.example.com"]))
    assert hit(t, "/", host="example.com") is None
    assert hit(t, "/", host="x.example.com") == ("wild", 0)


def test_wildcard_host_falls_back_to_catch_all() -> None:
    t = table(make_route("wild", [{"matches": [prefix("/v1")]}], hostnames=["*.example.com"]),
              make_route("any", [{"matches": [prefix("/")]}]))
    assert hit(t, "/v1", host="a.example.com") == ("wild", 0)
    assert hit(t, "/v2", host="a.example.com") == ("any", 0)
    assert hit(t, "/v1", host="other.org") == ("any", 0)


def test_exact_host_falls_back_to_wildcard() -> None:
    t = table(make_route("exact", [{"matches": [exact("/only")]}], hostnames=["foo.example.com"]),
              make_route("wild", [{}], hostnames=["*.example.com"]))
    assert hit(t, "/only", host="foo.example.com") == ("exact", 0)
    assert hit(t, "/other", host="foo.example.com") == ("wild", 0)


def test_hostname_specificity_beats_path_specificity() -> None:
    t = table(make_route("exact", [{"matches": [prefix("/")]}], hostnames=["foo.example.com"]),
              make_route("any", [{"matches": [exact("/v1/models")]}]))
    assert hit(t, "/v1/models", host="foo.example.com") == ("exact", 0)


def test_route_with_several_hostnames_is_found_under_each() -> None:
    t = table(make_route("r", [{}], hostnames=["a.com", "*.b.com"]))
    assert hit(t, "/", host="a.com") == ("r", 0)
    assert hit(t, "/", host="x.b.com") == ("r", 0)
    assert hit(t, "/", host="c.com") is None


# --- indexing and describe ------------------------------------------------------------------------------


def test_lookup_tests_only_candidates_in_matching_buckets(monkeypatch) -> None:
    routes = [make_route(f"r{i}", [{"matches": [prefix(f"/p{i}/x")]}, {"matches": [exact(f"/e{i}")]}])
              for i in range(500)]
    t = table(*routes)
    calls = []
    original = table_module._Candidate.accepts

    def counting(self, *args):
        calls.append(self)
        return original(self, *args)

    monkeypatch.setattr(table_module._Candidate, "accepts", counting)
    assert hit(t, "/p250/x/y/z") == ("r250", 0)
    assert hit(t, "/e17") == ("r17", 1)
    assert hit(t, "/nothing/here") is None
    assert len(calls) == 2


def test_describe_lists_matches_in_precedence_order() -> None:
    t = table(make_route("r", [{"matches": [prefix("/")]}, {"matches": [exact("/x"), regex("/y.*")]}],
                         hostnames=["a.com"]),
              make_route("s", [{"matches": [{**prefix("/v1"), "method": "POST"}]}]))
    rows = [(d["host"], d["route"], d["rule"], d["match"], d["path"]) for d in t.describe()]
    assert rows == [
        ("a.com", "default/r", 1, 0, "Exact /x"),
        ("a.com", "default/r", 1, 1, "RegularExpression /y.*"),
        ("a.com", "default/r", 0, 0, "PathPrefix /"),
        ("*", "default/s", 0, 0, "PathPrefix /v1"),
    ]
    assert t.describe()[3]["method"] == "POST"


# --- property: the index agrees with a linear scan ------------------------------------------------------

PATHS = ["/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/ab/c", "/b", "/b/a", "/a//b"]
PREFIXES = ["/", "/a", "/a/", "/a/b", "/ab", "/b"]
REGEXES = ["/a.*", "/a/[a-z]+", "/(a|b)", ".*", "/b/?a?"]
HOSTS = ["foo.com", "a.foo.com", "b.a.foo.com", "bar.com", "x.bar.com"]
ROUTE_HOSTS = ["foo.com", "*.foo.com", "*.a.foo.com", "a.foo.com", "bar.com", "*.com"]
HEADER_NAMES = ["x-a", "X-A", "x-b", "X-Gateway-Model-Name"]
VALUES = ["1", "2"]
TIMES = ["", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]

# Few distinct values, `PathPrefix /` most often: ties that only the later criteria break are common.
path_matches = hs.one_of(
    hs.just(PathMatch("PathPrefix", "/")),
    hs.builds(PathMatch, hs.just("Exact"), hs.sampled_from(PATHS)),
    hs.builds(PathMatch, hs.just("PathPrefix"), hs.sampled_from(PREFIXES)),
    hs.builds(PathMatch, hs.just("RegularExpression"), hs.sampled_from(REGEXES)),
)


def _unique_by_name(items):
    seen, out = set(), []
    for item in items:
        if item.name.lower() not in seen:
            seen.add(item.name.lower())
            out.append(item)
    return tuple(out)


headers_matches = hs.lists(
    hs.builds(HeaderMatch, hs.sampled_from(["Exact", "RegularExpression"]), hs.sampled_from(HEADER_NAMES),
              hs.sampled_from(VALUES)), max_size=2).map(_unique_by_name)
query_matches = hs.lists(
    hs.builds(QueryParamMatch, hs.just("Exact"), hs.sampled_from(["q", "Q"]), hs.sampled_from(VALUES)),
    max_size=2).map(lambda qs: tuple({q.name: q for q in qs}.values()))
route_matches = hs.builds(
    RouteMatch,
    path_matches,
    hs.one_of(hs.just(()), headers_matches),
    hs.one_of(hs.just(()), query_matches),
    hs.sampled_from([None, None, None, "GET", "POST"]),
)


@hs.composite
def routes(draw) -> list[RouteEntry]:
    names = draw(hs.lists(hs.tuples(hs.sampled_from(["ns1", "ns2"]), hs.sampled_from(["r1", "r2", "r3"])),
                          min_size=1, max_size=5, unique=True))
    out = []
    for namespace, name in names:
        rules = tuple(Rule(None, tuple(draw(hs.lists(route_matches, min_size=1, max_size=3))), (), (), Timeouts())
                      for _ in range(draw(hs.integers(1, 3))))
        hostnames = tuple(draw(hs.one_of(hs.just([]), hs.lists(hs.sampled_from(ROUTE_HOSTS), max_size=2,
                                                                unique=True))))
        meta = Metadata(namespace, name, creation_timestamp=draw(hs.sampled_from(TIMES)))
        route = HTTPRoute(meta, (), hostnames, rules)
        out.append(entry(route))
    return out


requests = hs.fixed_dictionaries({
    "host": hs.sampled_from(HOSTS),
    "method": hs.sampled_from(["GET", "POST"]),
    "path": hs.sampled_from(PATHS + ["/abc", "/c"]),
    "headers": hs.dictionaries(hs.sampled_from(["x-a", "x-b", "x-gateway-model-name"]), hs.sampled_from(VALUES)),
    "query": hs.dictionaries(hs.sampled_from(["q", "Q"]), hs.sampled_from(VALUES)),
    "model": hs.sampled_from([None, "1", "2"]),
})


def _host_ranks(hostnames: tuple[str, ...], host: str) -> list[tuple[int, int]]:
    """Every hostname group a route is found under for `host`, as sort keys (lower is more specific)."""
    if not hostnames:
        return [(2, 0)]
    ranks = []
    for h in hostnames:
        if h == host:
            ranks.append((0, 0))
        elif h.startswith("*.") and host.endswith(h[1:]) and len(host) > len(h) - 1:
            ranks.append((1, -len(h)))
    return ranks


def _reference_match(entries: list[RouteEntry], req: dict[str, Any]) -> tuple[Any, ...] | None:
    """Score every match of every route with the spec's criteria; the best one that matches wins."""
    headers = {k.lower(): v for k, v in req["headers"].items()}
    best = None
    for e in entries:
        route = e.route
        for h_rank in _host_ranks(e.hostnames, req["host"]):
            for i, rule in enumerate(route.rules):
                for j, m in enumerate(rule.matches):
                    if not _reference_accepts(m, req, headers):
                        continue
                    p = m.path
                    key = (h_rank, {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}[p.type], -len(p.value),
                           m.method is None, -len(m.headers), -len(m.query_params),
                           route.meta.creation_timestamp, f"{route.meta.namespace}/{route.meta.name}", i, j)
                    if best is None or key < best:
                        best = key
    return None if best is None else (best[7], best[8], best[9])


def _reference_accepts(m: RouteMatch, req: dict[str, Any], headers: dict[str, str]) -> bool:
    path, p = req["path"], m.path
    if p.type == "Exact" and path != p.value:
        return False
    if p.type == "PathPrefix":
        base = p.value.rstrip("/")
        if not (path == base or path.startswith(base + "/")):
            return False
    if p.type == "RegularExpression" and not re.fullmatch(p.value, path):
        return False
    if m.method is not None and m.method != req["method"]:
        return False
    for h in m.headers:
        name = h.name.lower()
        value = req["model"] if name == "x-gateway-model-name" and req["model"] is not None else headers.get(name)
        if value is None or not (value == h.value if h.type == "Exact" else re.fullmatch(h.value, value)):
            return False
    return all(req["query"].get(q.name) == q.value for q in m.query_params)


@settings(max_examples=500, deadline=None)
@given(routes(), hs.lists(requests, min_size=1, max_size=8))
def test_indexed_lookup_agrees_with_linear_reference(entries: list[RouteEntry], reqs: list[dict[str, Any]]) -> None:
    t = compile_routes(entries)
    for req in reqs:
        result = t.match(req["host"], req["method"], req["path"], req["query"], CIMultiDict(req["headers"]),
                         req["model"])
        got = None
        if result is not None:
            rule = result.rule
            route = next(e.route for e in entries if e.route.meta.ref == rule.route)
            j = route.rules[rule.rule_index].matches.index(
                next(m for m in route.rules[rule.rule_index].matches if m.path == result.path))
            got = (str(rule.route), rule.rule_index, j)
        expected = _reference_match(entries, req)
        if expected is None or got is None:
            assert got == expected, req
        else:
            # Two matches of one rule may share a path; compare the rule, and the path of the match.
            assert got[:2] == expected[:2], req
            route = next(e.route for e in entries if str(e.route.meta.ref) == expected[0])
            assert result.path == route.rules[expected[1]].matches[expected[2]].path, req

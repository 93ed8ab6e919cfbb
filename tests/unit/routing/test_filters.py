"""Route filters: path rewrites (the spec's ReplacePrefixMatch table), header modifiers, redirect Locations."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from kthena_router.api.httproute import HeaderModifier, PathMatch, PathModifier, RequestRedirect
from kthena_router.routing.filters import apply_header_modifier, redirect_location, rewrite_path

ROOT = PathMatch("PathPrefix", "/")


# --- rewrite_path ---------------------------------------------------------------------------------------


def test_replace_full_path_ignores_the_request_path() -> None:
    assert rewrite_path("/foo/bar", PathMatch("PathPrefix", "/foo"), PathModifier("ReplaceFullPath", "/one")) == "/one"


@pytest.mark.parametrize(("path", "matched", "replacement", "expected"), [
    # The table in HTTPPathModifier.ReplacePrefixMatch.
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"),
    ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
    # And a few more: the root prefix, a deeper path.
    ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
    ("/foo/bar/baz", "/foo/bar", "/v1", "/v1/baz"),
])
def test_replace_prefix_match_follows_the_spec_table(path: str, matched: str, replacement: str,
                                                     expected: str) -> None:
    modifier = PathModifier("ReplacePrefixMatch", replacement)
    assert rewrite_path(path, PathMatch("PathPrefix", matched), modifier) == expected


def test_replace_prefix_match_leaves_a_path_the_prefix_does_not_cover() -> None:
    modifier = PathModifier("ReplacePrefixMatch", "/xyz")
    assert rewrite_path("/foobar", PathMatch("PathPrefix", "/foo"), modifier) == "/foobar"


def test_replace_prefix_match_after_an_exact_match_replaces_the_whole_path() -> None:
    modifier = PathModifier("ReplacePrefixMatch", "/xyz")
    assert rewrite_path("/foo", PathMatch("Exact", "/foo"), modifier) == "/xyz"


# --- apply_header_modifier ------------------------------------------------------------------------------


def test_set_overwrites_every_value_whatever_the_case() -> None:
    headers = CIMultiDict([("X-Header-Set", "one"), ("x-header-set", "two")])
    apply_header_modifier(headers, HeaderModifier(set=(("x-HEADER-set", "set-overwrites-values"),)))
    assert headers.getall("X-Header-Set") == ["set-overwrites-values"]


def test_set_creates_a_missing_header() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    apply_header_modifier(headers, HeaderModifier(set=(("X-Header-Set", "v"),)))
    assert headers["x-header-set"] == "v"


def test_add_appends_to_an_existing_header_comma_joined() -> None:
    headers = CIMultiDict([("X-Header-Add-Append", "some-other-value")])
    apply_header_modifier(headers, HeaderModifier(add=(("x-header-add-append", "add-appends-values"),)))
    assert headers.getall("X-Header-Add-Append") == ["some-other-value,add-appends-values"]


def test_add_joins_every_existing_value() -> None:
    headers = CIMultiDict([("X-A", "1"), ("x-a", "2")])
    apply_header_modifier(headers, HeaderModifier(add=(("X-A", "3"),)))
    assert headers.getall("X-A") == ["1,2,3"]


def test_add_creates_a_missing_header() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    apply_header_modifier(headers, HeaderModifier(add=(("X-Header-Add", "add-appends-values"),)))
    assert headers["X-Header-Add"] == "add-appends-values"


def test_remove_deletes_every_value_whatever_the_case() -> None:
    headers = CIMultiDict([("X-Header-Remove", "a"), ("x-header-remove", "b"), ("Keep", "c")])
    apply_header_modifier(headers, HeaderModifier(remove=("X-HEADER-REMOVE", "Absent")))
    assert "x-header-remove" not in headers
    assert headers["keep"] == "c"


# --- redirect_location ----------------------------------------------------------------------------------


def location(redirect: RequestRedirect, *, scheme: str = "http", host: str = "example.com",
             port: int | None = 8080, path: str = "/a/b", query: str = "",
             matched: PathMatch = ROOT) -> str:
    return redirect_location(scheme, host, port, path, query, matched, redirect)


def test_hostname_redirect_keeps_the_listener_port() -> None:
    assert location(RequestRedirect(hostname="example.org")) == "http://example.org:8080/a/b"


def test_listener_port_that_is_well_known_for_the_scheme_is_left_out() -> None:
    assert location(RequestRedirect(hostname="example.org"), port=80) == "http://example.org/a/b"
    assert location(RequestRedirect(hostname="example.org"), scheme="https", port=443) == "https://example.org/a/b"


def test_scheme_redirect_uses_the_schemes_well_known_port() -> None:
    assert location(RequestRedirect(scheme="https")) == "https://example.com/a/b"
    assert location(RequestRedirect(scheme="http"), scheme="https", port=8443) == "http://example.com/a/b"


def test_explicit_port_is_used_and_shown_unless_well_known() -> None:
    assert location(RequestRedirect(port=8083)) == "http://example.com:8083/a/b"
    assert location(RequestRedirect(scheme="https", port=8443)) == "https://example.com:8443/a/b"
    assert location(RequestRedirect(scheme="https", port=443)) == "https://example.com/a/b"
    assert location(RequestRedirect(port=80)) == "http://example.com/a/b"


def test_port_redirect_to_443_on_http_is_shown() -> None:
    assert location(RequestRedirect(port=443)) == "http://example.com:443/a/b"


def test_unknown_listener_port_is_left_out() -> None:
    assert location(RequestRedirect(hostname="example.org"), port=None) == "http://example.org/a/b"


def test_redirect_path_modifiers_apply() -> None:
    full = RequestRedirect(path=PathModifier("ReplaceFullPath", "/new"))
    assert location(full) == "http://example.com:8080/new"
    prefix = RequestRedirect(path=PathModifier("ReplacePrefixMatch", "/v2"))
    assert location(prefix, matched=PathMatch("PathPrefix", "/a")) == "http://example.com:8080/v2/b"


def test_query_string_is_kept() -> None:
    assert location(RequestRedirect(hostname="x.org"), query="a=1&b=2") == "http://x.org:8080/a/b?a=1&b=2"

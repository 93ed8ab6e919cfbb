"""HTTPRoute filters applied to a matched request: path rewrites, header modifiers and redirect locations.

Pure helpers called by the proxy on the request path, after `RouteTable.match` picked a rule. They take
the rule's parsed filter and the request's pieces and return (or edit in place) the result; no I/O, no
state, nothing compiled per call.
"""

from __future__ import annotations

from multidict import CIMultiDict

from kthena_router.api.httproute import HeaderModifier, PathMatch, PathModifier, RequestRedirect

WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def _prefix_matches(prefix: str, path: str) -> bool:
    """Element-wise PathPrefix test; `prefix` is already stripped of its trailing `/`."""
    return path == prefix or path.startswith(prefix + "/") or (not prefix and path.startswith("/"))


def rewrite_path(path: str, matched: PathMatch, modifier: PathModifier) -> str:
    """The path after a URLRewrite or RequestRedirect path modifier.

    `ReplaceFullPath` returns the modifier's value. `ReplacePrefixMatch` swaps the matched prefix for the
    value, element-wise and ignoring trailing slashes on both: with prefix `/foo`, `/foo/bar` becomes
    `/xyz/bar` for `/xyz` or `/xyz/`, and `/bar` for `/`; `/foo/` keeps its trailing slash (`/xyz/`), and
    an empty result becomes `/`. When the rule did not match by prefix (which validation rules out) the
    whole path counts as the prefix.
    """
    if modifier.type == "ReplaceFullPath":
        return modifier.value
    replacement = modifier.value.rstrip("/")
    if matched.type == "PathPrefix":
        prefix = matched.value.rstrip("/")
        if not _prefix_matches(prefix, path):
            return path
        rest = path[len(prefix):]
    else:
        rest = ""
    return replacement + rest or "/"


def apply_header_modifier(headers: CIMultiDict[str], modifier: HeaderModifier) -> None:
    """Apply `set`, then `add`, then `remove`, with case-insensitive names.

    `set` replaces every value of the header; `add` appends to an existing header as one comma-joined
    value (`some-other-value,add-appends-values`) or creates it; `remove` deletes every value.
    """
    for name, value in modifier.set:
        headers[name] = value
    for name, value in modifier.add:
        existing = headers.getall(name, None)
        if existing:
            headers[name] = ",".join((*existing, value))
        else:
            headers[name] = value
    for name in modifier.remove:
        headers.popall(name, None)


def redirect_location(scheme: str, host: str, port: int | None, path: str, query: str, matched: PathMatch,
                      redirect: RequestRedirect) -> str:
    """The `Location` of a RequestRedirect, following the field rules of HTTPRequestRedirectFilter.

    `scheme`, `host`, `path` and `query` are the request's (host lower-cased without its port, query
    without `?`); `port` is the port of the listener the request arrived on. The redirect's scheme and
    hostname replace the request's when set. The port is the redirect's port when set; otherwise the
    well-known port of the redirect's scheme when a scheme is set (http 80, https 443); otherwise the
    listener port. It is left out of the Location when it is the well-known port of the final scheme.
    The query string is kept.
    """
    new_scheme = redirect.scheme or scheme
    new_host = redirect.hostname or host
    if redirect.port is not None:
        new_port: int | None = redirect.port
    elif redirect.scheme:
        new_port = WELL_KNOWN_PORTS.get(redirect.scheme, port)
    else:
        new_port = port
    authority = new_host
    if new_port is not None and WELL_KNOWN_PORTS.get(new_scheme) != new_port:
        authority = f"{new_host}:{new_port}"
    new_path = rewrite_path(path, matched, redirect.path) if redirect.path is not None else path
    location = f"{new_scheme}://{authority}{new_path}"
    return f"{location}?{query}" if query else location

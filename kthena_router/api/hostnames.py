"""Hostname rules shared by listeners and routes: validation, wildcard matching, intersection."""

from __future__ import annotations

import re

_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def check_hostname(value: str) -> str | None:
    """Return why `value` is not a valid Gateway API hostname, or None when it is."""
    lowered = value.lower()
    if not value or len(value) > 253:
        return "hostname must be 1-253 characters"
    if _IPV4.match(lowered) or ":" in lowered:
        return "hostname must not be an IP address"
    if not _HOSTNAME.match(lowered):
        return f"invalid hostname {value!r} (a wildcard may only be the first label, as '*.')"
    return None


def host_matches(pattern: str, host: str) -> bool:
    """Whether a request host matches an exact or `*.suffix` hostname (the wildcard needs one label or more)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def intersect(listener: str | None, route: str) -> str | None:
    """The hostnames a route hostname serves on a listener, or None when they do not overlap.

    Returns the more specific of the two: an exact name wins over a wildcard covering it, and of two
    wildcards the longer one.
    """
    if listener is None:
        return route
    if listener == route:
        return route
    if route.startswith("*."):
        if listener.startswith("*."):
            if listener.endswith(route[1:]):
                return listener
            if route.endswith(listener[1:]):
                return route
            return None
        return listener if host_matches(route, listener) else None
    if listener.startswith("*."):
        return route if host_matches(listener, route) else None
    return None


def normalize_host(host_header: str) -> str:
    """Lower-case the Host header and drop its port (and a trailing dot), as the spec requires."""
    host = host_header
    if host.startswith("["):
        end = host.find("]")
        host = host[: end + 1] if end != -1 else host
    else:
        colon = host.rfind(":")
        if colon != -1:
            host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    return host.lower()

"""API keys from one Kubernetes Secret, watched through the API (`--api-keys-secret NAMESPACE/NAME`).

Each entry of the Secret's `data` is one key; the entry's name is the principal. The Secret is listed and
watched with a field selector on its name (so a Role may grant exactly this Secret with `resourceNames`),
through the same list-then-watch layers as the configuration (`sources/kube.py`): resumed after a cut,
relisted after 410, retried with backoff while the API is unreachable. Keys are kept as SHA-256 digests,
like `apikeys.py`; a Secret that is deleted or absent contributes no keys. Values are never logged.

The exact permission it needs is `rbac.API_KEYS_SECRET_RULES`; it is not part of the default RBAC because
only this flag uses it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from kthena_router.auth.apikeys import digest
from kthena_router.sources.kube import (
    Kind,
    KubeApi,
    KubeApiError,
    Listed,
    Selectors,
    WatchEvent,
    WatchTimings,
    watch_forever,
)

log = logging.getLogger(__name__)

SECRETS = Kind("", "v1", "secrets", "Secret")


def parse_secret_ref(text: str, default_namespace: str) -> tuple[str, str]:
    """`NAMESPACE/NAME` (or `NAME`, in `default_namespace`) as (namespace, name)."""
    namespace, sep, name = text.strip().rpartition("/")
    if not sep:
        namespace = default_namespace
    if not name or not namespace or "/" in namespace:
        raise ValueError(f"--api-keys-secret must be NAMESPACE/NAME or NAME, got {text!r}")
    return namespace, name


def keys_of(secret: dict[str, Any] | None) -> dict[bytes, str]:
    """digest -> principal from a Secret object's `data` (base64 values); undecodable entries are skipped."""
    keys: dict[bytes, str] = {}
    data = (secret or {}).get("data") or {}
    if not isinstance(data, dict):
        return keys
    for name, encoded in sorted(data.items()):
        try:
            key = base64.b64decode(str(encoded), validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            log.warning("API keys Secret: entry %r is not base64-encoded UTF-8 text; skipped", name)
            continue
        if key:
            keys[digest(key)] = str(name)
    return keys


class ApiKeySecret:
    """The keys of one Secret, kept current by `run()`."""

    def __init__(self, api: KubeApi, namespace: str, name: str, *, timings: WatchTimings | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.timings = timings or WatchTimings()
        self.keys: dict[bytes, str] = {}
        self.listed = asyncio.Event()  # set once the Secret (or its absence) has been read
        self._selectors = Selectors(namespace, fields=f"metadata.name={name}")

    def lookup(self, key_digest: bytes) -> str | None:
        return self.keys.get(key_digest)

    async def first_list(self) -> None:
        """Read the Secret once; an authorization failure (401/403) raises ValueError at once, since retrying
        cannot help; other failures are left to the watch, which retries."""
        try:
            await self.api.request("GET", SECRETS.path(self.namespace), query=self._selectors.query())
        except KubeApiError as exc:
            if exc.status in (401, 403):
                raise ValueError(f"cannot read Secret {self.namespace}/{self.name} for API keys: {exc} "
                                 "(the router's service account needs list and watch on it; see docs/auth.md)") from None

    async def run(self) -> None:
        """List then watch the Secret, forever (until cancelled)."""
        async for item in watch_forever(self.api, SECRETS, self._selectors, timings=self.timings):
            if isinstance(item, Listed):
                secret = next((raw for raw in item.items if _name(raw) == self.name), None)
                self._set(secret, "listed" if secret is not None else "absent")
                self.listed.set()
            elif isinstance(item, WatchEvent) and _name(item.object) == self.name:
                self._set(None if item.type == "DELETED" else item.object, item.type.lower())

    def _set(self, secret: dict[str, Any] | None, what: str) -> None:
        keys = keys_of(secret)
        if keys != self.keys or not self.listed.is_set():
            level = logging.WARNING if secret is None else logging.INFO
            log.log(level, "API keys Secret %s/%s %s: %d keys", self.namespace, self.name, what, len(keys))
        self.keys = keys


def _name(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata")
    return meta.get("name") if isinstance(meta, dict) else None

"""Manifests from a directory: every `*.yaml`/`*.yml` file, multi-document, reloaded when files change.

An invalid object is logged with its file, kind, name and field and left out; the valid ones around it are
used. When a file changes and an object in it no longer parses, the last valid version of that object is
kept (and a file that is no longer valid YAML keeps all its last valid objects) until it is fixed or removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kthena_router.api import InvalidResource, ObjectRef, Resource, UnknownKind, parse_resource
from kthena_router.api.parse import GATEWAY_API_KINDS, INFERENCE_KINDS
from kthena_router.resources import Resources, ResourceStore

log = logging.getLogger(__name__)

Identity = tuple[str, ObjectRef]  # (kind, namespace/name)


@dataclass(slots=True)
class _FileState:
    signature: tuple[int, int]  # (mtime_ns, size)
    objects: dict[Identity, Resource] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadResult:
    resources: Resources
    errors: tuple[str, ...]
    changed: bool


class FileSource:
    """Reads a manifest directory; `reload()` is synchronous (run it in a thread), `watch()` polls."""

    def __init__(self, directory: str | os.PathLike[str], *, enable_gateway_api: bool = True,
                 enable_inference_extension: bool = True, interval: float = 0.5) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self._disabled: frozenset[type] = frozenset(
            (set() if enable_gateway_api else set(GATEWAY_API_KINDS))
            | (set() if enable_inference_extension else set(INFERENCE_KINDS)))
        self._files: dict[Path, _FileState] = {}

    def _scan(self) -> dict[Path, tuple[int, int]]:
        found = {}
        try:
            entries = sorted(self.directory.iterdir())
        except FileNotFoundError:
            return {}
        for path in entries:
            if path.suffix not in (".yaml", ".yml") or not path.is_file():
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found[path] = (st.st_mtime_ns, st.st_size)
        return found

    def reload(self) -> LoadResult:
        """Re-read the files that changed; return the merged view and every problem still present."""
        if not self.directory.is_dir():
            raise FileNotFoundError(f"config directory {self.directory} does not exist")
        current = self._scan()
        changed = set(current) != set(self._files)
        for path in list(self._files):
            if path not in current:
                log.info("config: %s removed", path)
                del self._files[path]
        for path, signature in current.items():
            previous = self._files.get(path)
            if previous is not None and previous.signature == signature:
                continue
            changed = True
            self._files[path] = self._load_file(path, signature, previous)
        store = ResourceStore()
        owner: dict[Identity, Path] = {}
        errors: list[str] = []
        for path in sorted(self._files):
            state = self._files[path]
            errors.extend(state.errors)
            for identity, resource in state.objects.items():
                if identity in owner:
                    message = (f"{path}: {identity[0]} {identity[1]} is also defined in {owner[identity]}; "
                               f"using the one in {path}")
                    errors.append(message)
                    if changed:
                        log.warning("config: %s", message)
                owner[identity] = path
                store.put(resource)
        return LoadResult(store.view(), tuple(errors), changed)

    def _load_file(self, path: Path, signature: tuple[int, int], previous: _FileState | None) -> _FileState:
        state = _FileState(signature)
        try:
            text = path.read_text(encoding="utf-8")
            documents = list(yaml.safe_load_all(text))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            message = f"{path}: cannot read as YAML: {_one_line(exc)}"
            if previous is not None and previous.objects:
                message += f" (keeping its {len(previous.objects)} last valid objects)"
                state.objects = dict(previous.objects)
            log.error("config: %s", message)
            state.errors.append(message)
            return state
        for index, raw in enumerate(documents):
            if raw is None:
                continue
            try:
                resource = parse_resource(raw)
            except UnknownKind as exc:
                log.info("config: %s: document %d: skipping unsupported kind %s %s", path, index + 1,
                         exc.api_version, exc.kind)
                continue
            except InvalidResource as exc:
                identity = _identity_of(raw)
                message = f"{path}: {exc}"
                kept = previous.objects.get(identity) if previous is not None and identity else None
                if kept is not None and identity is not None:
                    state.objects[identity] = kept
                    message += " (keeping the last valid version)"
                log.error("config: %s", message)
                state.errors.append(message)
                continue
            if type(resource) in self._disabled:
                log.info("config: %s: %s %s ignored: its API is disabled by flags", path, resource.kind,
                         resource.meta.ref)
                continue
            state.objects[(resource.kind, resource.meta.ref)] = resource
        return state

    @property
    def errors(self) -> list[str]:
        """Problems in the files as last read (for the debug dump)."""
        return [error for state in self._files.values() for error in state.errors]

    async def load(self) -> Resources:
        """The first full read; raises FileNotFoundError when the directory does not exist."""
        return (await asyncio.to_thread(self.reload)).resources

    async def watch(self, on_change: Callable[[Resources], Awaitable[None]]) -> None:
        """Poll for changes forever, calling `on_change` after each reload that changed something."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = await asyncio.to_thread(self.reload)
            except FileNotFoundError as exc:
                log.error("config: %s; keeping the last configuration", exc)
                continue
            if result.changed:
                await on_change(result.resources)


def _identity_of(raw: Any) -> Identity | None:
    """Best-effort (kind, ref) of a document that failed validation, to keep its last valid version."""
    if not isinstance(raw, Mapping):
        return None
    kind, meta = raw.get("kind"), raw.get("metadata")
    if not isinstance(kind, str) or not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    namespace = meta.get("namespace")
    if kind in ("GatewayClass", "Namespace"):
        namespace = ""
    elif not isinstance(namespace, str) or not namespace:
        namespace = "default"
    return kind, ObjectRef(namespace, meta["name"])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())

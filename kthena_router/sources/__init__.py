"""Where configuration comes from: a directory of manifests (`files`), or the Kubernetes API.

A source only gathers resources into a `ResourceStore` and reports a new `Resources` view when something
changed; it never routes, reconciles or writes status itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from kthena_router.resources import Resources


class ConfigSource(Protocol):
    """What the app needs of a source: a first full state, then changes, and the problems it saw."""

    @property
    def errors(self) -> Sequence[str]: ...

    async def load(self) -> Resources:
        """Everything known now. May raise when the source cannot be read at all."""
        ...

    async def watch(self, on_change: Callable[[Resources], Awaitable[None]]) -> None:
        """Run forever, calling `on_change` with the whole new state after each change."""
        ...

"""The approximate prefix-cache index: which endpoint has probably cached which prompt prefix.

A prompt is cut into blocks of `block_size` characters (a trailing partial block is ignored, at most
`max_blocks` blocks); each block's hash chains the previous one, starting from a hash of the model name,
so equal hashes mean equal prefixes of the same model. The index maps a block hash to the endpoints that
served it, and keeps one LRU of hashes per endpoint, bounded by `capacity` entries, so memory stays
bounded however many prompts pass. It is router-local (like the inference extension's approximate index)
and only ever updated with the endpoint that actually served a request.

Hashes use Python's `hash` of (previous hash, block): fast, and randomised per process, so a client
cannot craft colliding prompts; the index is not shared between processes, so that costs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from kthena_router.snapshot import EndpointKey


def prompt_text(payload: dict | None) -> str:
    """The text whose prefix the model server caches: a completion's prompt, or a chat's messages."""
    if not payload:
        return ""
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "".join(prompt)
    messages = payload.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            content = message.get("content")
            parts.append(f"<|{role}|>\n" if isinstance(role, str) else "<||>\n")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        parts.append(part["text"])
            parts.append("\n")
        return "".join(parts)
    text = payload.get("input")
    if isinstance(text, str):
        return text
    return ""


def block_hashes(model: str, text: str, block_size: int, max_blocks: int) -> list[int]:
    """The chained hashes of the full blocks of `text`, seeded with the model name."""
    n = min(len(text) // block_size, max_blocks)
    if n == 0:
        return []
    h = hash(model)
    out = [0] * n
    for i in range(n):
        start = i * block_size
        h = hash((h, text[start:start + block_size]))
        out[i] = h
    return out


class PrefixIndex:
    """Block hash -> endpoints, with one bounded LRU of hashes per endpoint."""

    __slots__ = ("capacity", "owners", "lru")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.owners: dict[int, set[EndpointKey]] = {}
        self.lru: dict[EndpointKey, OrderedDict[int, None]] = {}

    def match(self, hashes: list[int], keys: list[EndpointKey]) -> list[int]:
        """For each key, how many leading blocks of `hashes` it holds (contiguous from the first)."""
        counts = [0] * len(keys)
        if not hashes or not self.owners:
            return counts
        position = {key: i for i, key in enumerate(keys)}
        alive = set(position)
        owners = self.owners
        for depth, h in enumerate(hashes):
            holders = owners.get(h)
            if not holders:
                break
            alive &= holders
            if not alive:
                break
            for key in alive:
                counts[position[key]] = depth + 1
        return counts

    def add(self, key: EndpointKey, hashes: list[int]) -> None:
        """Record that `key` now holds every block of `hashes` (most recent use)."""
        if not hashes:
            return
        lru = self.lru.get(key)
        if lru is None:
            lru = self.lru[key] = OrderedDict()
        owners = self.owners
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
                continue
            lru[h] = None
            holders = owners.get(h)
            if holders is None:
                owners[h] = {key}
            else:
                holders.add(key)
        while len(lru) > self.capacity:
            old, _ = lru.popitem(last=False)
            self._drop(old, key)

    def forget(self, alive: Collection[EndpointKey]) -> None:
        """Remove every endpoint not in `alive`."""
        for key in [k for k in self.lru if k not in alive]:
            for h in self.lru.pop(key):
                self._drop(h, key)

    def _drop(self, h: int, key: EndpointKey) -> None:
        holders = self.owners.get(h)
        if holders is not None:
            holders.discard(key)
            if not holders:
                del self.owners[h]

    def __len__(self) -> int:
        return sum(len(lru) for lru in self.lru.values())

"""The simulated KV cache: a fixed number of token blocks, prefix blocks shared by hash, and an LRU of cached ones.

A prompt's token ids are cut into full blocks of `block_size` tokens and each block is named by a hash
chained over every block before it, so two prompts share block `i` exactly when their first `i + 1`
blocks are identical. The engine asks `admit` for room before a sequence runs, `commit_prompt` once its
prefill step is done (its prompt blocks become shareable), and `release` when it leaves (its full blocks,
generated ones included, stay cached until evicted, least recently used first).

Accounting: every block is either held (by at least one running sequence: shared hashed blocks counted
once, plus each sequence's private blocks), cached (hashed, held by nobody, evictable) or free. Usage
is held blocks over capacity, as vLLM reports it (cached blocks count as free there). Pure bookkeeping:
no I/O, no clock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_ROOT_HASH = 0x6B76  # the parent of a prompt's first block


def block_hashes(token_ids: Sequence[int], block_size: int, salt: int = 0) -> list[int]:
    """Chained hashes of every full block of `token_ids` (a trailing partial block has none).

    `salt` starts the chain, so blocks computed under different LoRA adapters (whose KV differs, as in
    vLLM) never match. Built from tuples of ints, whose hash CPython does not randomise, so the names are
    the same in every process.
    """
    out: list[int] = []
    parent = hash((_ROOT_HASH, salt))
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, *token_ids[start : start + block_size]))
        out.append(parent)
    return out


@dataclass(slots=True, eq=False)
class Allocation:
    """The blocks one running sequence holds: shared prefix blocks (by hash) and private ones."""

    shared: list[int] = field(default_factory=list)
    private: int = 0
    cached_blocks: int = 0  # prefix blocks found in the cache at admission


class BlockCache:
    """Blocks of one simulated model server; see the module docstring for the life of a block."""

    __slots__ = ("capacity", "block_size", "_refs", "_lru", "_private")

    def __init__(self, capacity: int, block_size: int) -> None:
        self.capacity = capacity
        self.block_size = block_size
        self._refs: dict[int, int] = {}  # hashed block -> running sequences holding it
        self._lru: OrderedDict[int, None] = OrderedDict()  # hashed blocks held by nobody, oldest first
        self._private = 0

    @property
    def held(self) -> int:
        return len(self._refs) + self._private

    @property
    def cached(self) -> int:
        """Blocks held by nobody that a later prompt could still reuse."""
        return len(self._lru)

    @property
    def usage(self) -> float:
        return self.held / self.capacity

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` are in the cache (held or not)."""
        n = 0
        for h in hashes:
            if h not in self._refs and h not in self._lru:
                break
            n += 1
        return n

    def admit(self, prompt_hashes: Sequence[int], total_blocks: int) -> Allocation | None:
        """Take the blocks of a sequence needing `total_blocks` in all, reusing its cached prefix.

        Returns None, changing nothing, when they do not fit even after evicting every cached block the
        sequence does not reuse. A sequence larger than the whole cache is sized down to fit it alone.
        """
        total_blocks = min(total_blocks, self.capacity)
        matched = min(self.match(prompt_hashes), total_blocks)
        revived = sum(1 for h in prompt_hashes[:matched] if h in self._lru)
        need = total_blocks - matched
        if need > self.capacity - self.held - revived:
            return None
        refs, lru = self._refs, self._lru
        for h in prompt_hashes[:matched]:
            if h in lru:
                del lru[h]
                refs[h] = 1
            else:
                refs[h] += 1
        self._private += need
        while lru and self.held + len(lru) > self.capacity:
            lru.popitem(last=False)
        return Allocation(shared=list(prompt_hashes[:matched]), private=need, cached_blocks=matched)

    def commit_prompt(self, alloc: Allocation, prompt_hashes: Sequence[int]) -> None:
        """The prompt was prefilled: its full blocks become shared (a duplicate of a block already cached
        is dropped in favour of the cached one)."""
        refs, lru = self._refs, self._lru
        for h in prompt_hashes[len(alloc.shared) :]:
            if alloc.private == 0:
                break
            alloc.private -= 1
            self._private -= 1
            if h in refs:
                refs[h] += 1
            elif h in lru:
                del lru[h]
                refs[h] = 1
            else:
                refs[h] = 1
            alloc.shared.append(h)

    def release(self, alloc: Allocation, full_hashes: Sequence[int]) -> None:
        """The sequence left. `full_hashes` names its full blocks so far (prompt and generated); those
        not yet shared are kept as cached blocks, the rest of its private blocks are freed, and its shared
        blocks are cached once nobody holds them. The deepest blocks go to the old end of the LRU, so a
        prefix is evicted from its tail."""
        refs, lru = self._refs, self._lru
        kept: list[int] = []
        for h in full_hashes[len(alloc.shared) :]:
            if alloc.private == 0:
                break
            if h in refs or h in lru:
                continue
            alloc.private -= 1
            self._private -= 1
            kept.append(h)
        for h in reversed(kept):
            lru[h] = None
        for h in reversed(alloc.shared):
            left = refs[h] - 1
            if left:
                refs[h] = left
            else:
                del refs[h]
                lru[h] = None
        alloc.shared.clear()
        self._private -= alloc.private
        alloc.private = 0

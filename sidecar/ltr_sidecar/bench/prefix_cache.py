"""KV blocks kept after release (vLLM automatic prefix caching), as the simulator sees them.

When a sequence is preempted or finishes, its full KV blocks stay in GPU memory as evictable cache;
new allocations evict the least recently released first, a sequence's tail blocks before its head
(vLLM's evictor: oldest access time, then most hashed tokens). A resumed request reuses its cached
prefix and recomputes only the rest. Only a request's own blocks are modelled: replay workloads
repeat prompts, and counting hits across those repeats would flatter every policy alike.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict


class PrefixCache:
    """Released KV tokens per owner in LRU order; the simulator keeps `used + total <= capacity`."""

    def __init__(self, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.block_size = block_size
        self.total = 0
        self.evicted_total = 0
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._anonymous = itertools.count()

    def release(self, owner: str | None, tokens: int) -> None:
        """Keep the full blocks of `tokens` released by `owner` (None: a finished request, never reused)."""
        kept = tokens - tokens % self.block_size
        if kept <= 0:
            return
        key = owner if owner is not None else f"\0{next(self._anonymous)}"
        self.total += kept - self._lru.pop(key, 0)
        self._lru[key] = kept

    def cached(self, owner: str) -> int:
        return self._lru.get(owner, 0)

    def take(self, owner: str) -> int:
        """Reclaim `owner`'s cached tokens for its resumption (they count as used again)."""
        tokens = self._lru.pop(owner, 0)
        self.total -= tokens
        return tokens

    def evict_to(self, limit: int) -> None:
        """Evict (LRU, tail blocks first) until at most `limit` tokens stay cached."""
        while self.total > max(0, limit):
            key, tokens = next(iter(self._lru.items()))
            excess = self.total - max(0, limit)
            drop = min(tokens, -(-excess // self.block_size) * self.block_size)
            self.total -= drop
            self.evicted_total += drop
            if drop == tokens:
                del self._lru[key]
            else:
                self._lru[key] = tokens - drop

"""An LRU cache of image embeddings bounded by the bytes it holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch

DEFAULT_CACHE_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class CacheInfo:
    """Counters of an :class:`EmbeddingCache`."""

    hits: int
    misses: int
    entries: int
    nbytes: int
    max_bytes: int


class EmbeddingCache:
    """Least-recently-used map ``key -> (slice shape, embedding tensor)``.

    Parameters
    ----------
    max_bytes : int
        Upper bound on the summed ``tensor.nbytes`` of the entries; the least
        recently used entries are evicted to stay under it. 0 disables caching.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[tuple[int, int], torch.Tensor]] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, hw: tuple[int, int]) -> torch.Tensor | None:
        """The embedding stored for ``key`` and slice shape ``hw``, or None (a miss)."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != tuple(hw):
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item[1]

    def put(self, key: Hashable, hw: tuple[int, int], embedding: torch.Tensor) -> None:
        """Store an embedding, evicting the least recently used entries beyond ``max_bytes``."""
        size = embedding.element_size() * embedding.nelement()
        with self._lock:
            if key in self._items:
                self._nbytes -= self._size(self._items.pop(key)[1])
            if size > self.max_bytes:
                return
            self._items[key] = (tuple(hw), embedding)
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, (_, old) = self._items.popitem(last=False)
                self._nbytes -= self._size(old)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(
                self._hits, self._misses, len(self._items), self._nbytes, self.max_bytes
            )

    @staticmethod
    def _size(tensor: torch.Tensor) -> int:
        return tensor.element_size() * tensor.nelement()

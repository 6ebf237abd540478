"""A small in-memory read cache with a time to live, for values read from Key Vault."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """A small in-memory cache with a time to live and a bounded size (oldest entries go first).

    Each key has a generation that every invalidation bumps, so that a read which started before a
    write cannot put the old value back after the write (see `put_if_current`).
    """

    def __init__(
        self, ttl: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._generations: dict[str, int] = {}

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return value

    def generation(self, key: str) -> int:
        return self._generations.get(key, 0)

    def put_if_current(self, key: str, value: T, generation: int) -> None:
        if self.ttl <= 0 or self.generation(key) != generation:
            return
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)
        self._generations[key] = self.generation(key) + 1

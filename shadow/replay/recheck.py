"""The recheck heap: keys that mismatched (or were missing) wait here for their route's
recheck delay, then are read again. One bounded heap served by one task, instead of a
sleeping task per key, so a mismatch storm costs a heap entry per key, not a task."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Generic, TypeVar

Item = TypeVar("Item")


class RecheckHeap(Generic[Item]):
    """Items due at a monotonic time; `push` never waits, `due_batch` waits for the next."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heap: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: Item, delay: float) -> bool:
        """Schedule `item` in `delay` seconds; False (not scheduled) when full."""
        if len(self._heap) >= self.capacity:
            return False
        due = time.monotonic() + delay
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due, next(self._seq), item))
        if earliest is None or due < earliest:
            self._wakeup.set()  # the server sleeps until the old earliest: wake it
        return True

    async def due_batch(self, limit: int) -> list[tuple[Item, float]]:
        """Wait until at least one item is due; up to `limit` due items with how long
        each was late (seconds past its due time)."""
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        now = time.monotonic()
        due: list[tuple[Item, float]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            when, _, item = heapq.heappop(self._heap)
            due.append((item, now - when))
        return due

    def clear(self) -> list[Item]:
        """Remove and return everything still waiting (shutdown)."""
        items = [item for _, _, item in self._heap]
        self._heap.clear()
        return items

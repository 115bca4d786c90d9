"""ObjectId <-> uuid through `id_map(collection, legacy_object_id, new_id)`.

The PostgreSQL source resolves every uuid reference of a batch with one query for the
uuids it has not seen yet; this bounded LRU remembers the answers (an id_map row never
changes once written, so entries never go stale; only eviction bounds memory).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any


class IdMapCache:
    """uuid (as string) <-> legacy id, bounded LRU in both directions."""

    def __init__(self, maxsize: int = 100_000) -> None:
        if maxsize < 1:
            raise ValueError(f"IdMapCache maxsize must be >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._legacy_of: OrderedDict[str, str] = OrderedDict()
        self._new_of: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._legacy_of)

    def unknown(self, new_ids: Iterable[Any]) -> list[str]:
        """The uuids (strings) not in the cache, each once: what to look up."""
        missing = {str(new_id) for new_id in new_ids if new_id is not None} - self._legacy_of.keys()
        self.misses += len(missing)
        return sorted(missing)

    def remember(self, pairs: Iterable[tuple[Any, str]], collection: str | None = None) -> None:
        """Store (new_id, legacy id) pairs from an id_map query."""
        for new_id, legacy in pairs:
            text = str(new_id)
            self._legacy_of[text] = legacy
            self._legacy_of.move_to_end(text)
            if collection is not None:
                self._new_of[(collection, legacy)] = text
        for table in (self._legacy_of, self._new_of):
            while len(table) > self.maxsize:
                table.popitem(last=False)

    def legacy_of(self, new_ids: Iterable[Any]) -> dict[str, str]:
        """uuid string -> legacy id for the ones cached (touching them as recently used)."""
        found: dict[str, str] = {}
        for new_id in new_ids:
            if new_id is None:
                continue
            text = str(new_id)
            legacy = self._legacy_of.get(text)
            if legacy is not None:
                self._legacy_of.move_to_end(text)
                self.hits += 1
                found[text] = legacy
        return found

    def new_of(self, collection: str, legacy: str) -> str | None:
        """The uuid of a legacy id, when cached (used for list-route filters)."""
        return self._new_of.get((collection, legacy))

    def snapshot(self) -> Mapping[str, str]:
        return dict(self._legacy_of)

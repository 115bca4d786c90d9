"""Shadow sources: rebuild the API-shaped document of a batch of keys from the store
the API does *not* read (PostgreSQL before a read flip, MongoDB after it).

Every source has:
    async fetch(entity, keys) -> dict[key, document | None]   # None: no row -> MISSING
    async list_keys(entity, route, params) -> set[key]        # EXTRA on complete lists
    async close()
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from shadow.rules.spec import Entity, Route

if TYPE_CHECKING:
    from shadow.replay.viewread import BoundReader

# The concrete sources live in .mongo and .postgres and are imported where they are
# opened: the proxy process never needs pymongo or asyncpg, and a worker loads only the
# driver of the store it reads (each is 15-20 MB of resident memory).


class Source(Protocol):
    async def fetch(self, entity: Entity, keys: list[str], reader: BoundReader | None = None) -> dict[str, Any]: ...

    async def list_keys(self, entity: Entity, route: Route, params: Mapping[str, str]) -> set[str]: ...

    async def close(self) -> None: ...


__all__ = ["Source"]

"""Shadow sources: rebuild the API-shaped document of a batch of keys from the store
the API does *not* read (PostgreSQL before a read flip, MongoDB after it).

Every source has:
    async fetch(entity, keys) -> dict[key, document | None]   # None: no row -> MISSING
    async list_keys(entity, route, params) -> set[key]        # EXTRA on complete lists
    async close()
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from shadow.replay.sources.mongo import MongoSource
from shadow.replay.sources.postgres import PostgresSource
from shadow.rules.spec import Entity, Route


class Source(Protocol):
    async def fetch(self, entity: Entity, keys: list[str]) -> dict[str, Any]: ...

    async def list_keys(self, entity: Entity, route: Route, params: Mapping[str, str]) -> set[str]: ...

    async def close(self) -> None: ...


__all__ = ["MongoSource", "PostgresSource", "Source"]

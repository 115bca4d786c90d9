"""Shadow sources opened lazily: a database that is down at start (or later) never
stops the proxy or a shadow worker."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from shadow.config import Config
from shadow.replay.sources import Source
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from shadow.replay.sources.pgview import Selection
    from shadow.replay.viewread import BoundReader
    from shadow.rules.spec import Entity, Route

log = logging.getLogger("shadow.replay.sources")

SOURCE_RETRY_SECONDS = 1.0


class LazySource:
    """A shadow source opened on first use and re-opened after it failed to open, so a
    database that is down at start (or later) never stops the proxy."""

    def __init__(self, name: str, open_source: Callable[[], Awaitable[Source]]) -> None:
        self.name = name
        self._open_source = open_source
        self._source: Source | None = None
        self._failed_at = -SOURCE_RETRY_SECONDS
        self._last_error: BaseException | None = None
        self._lock = asyncio.Lock()
        self._opening: asyncio.Task[BaseException | None] | None = None
        self._tasks = TaskSet(f"{name}-source")

    async def _get(self) -> Source:
        if self._source is not None:
            return self._source
        async with self._lock:
            if self._source is None:
                if time.monotonic() - self._failed_at < SOURCE_RETRY_SECONDS:
                    raise ConnectionError(f"{self.name} source unavailable: {self._last_error}")
                try:
                    self._source = await self._open_source()
                except Exception as problem:
                    self._failed_at, self._last_error = time.monotonic(), problem
                    raise
        return self._source

    async def warm(self, timeout: float) -> bool:
        """Open now rather than on the first read (the shadow worker, at start). False
        when it failed (retried on use) or is still opening after `timeout` (it goes
        on opening: the first reads then wait for it)."""
        self._opening = self._tasks.spawn(self._open(), "open")  # it may outlive the wait
        try:
            problem = await asyncio.wait_for(asyncio.shield(self._opening), timeout)
        except TimeoutError as timed_out:
            problem = timed_out
        if problem is not None:
            log.warning("%s source not open at start (retried on use): %s", self.name,
                        problem or type(problem).__name__)
            return False
        return True

    async def _open(self) -> BaseException | None:
        """Open the source; what went wrong, or None (an expected failure, not a crash)."""
        try:
            await self._get()
        except Exception as problem:
            return problem
        return None

    async def fetch(self, entity: Entity, keys: list[str], reader: BoundReader | None = None) -> dict[str, Any]:
        source = await self._get()
        return await (source.fetch(entity, keys) if reader is None else source.fetch(entity, keys, reader))

    async def select(self, entity: Entity, route: Route, params: Mapping[str, str], query: Mapping[str, Any],
                     reader: BoundReader | None = None) -> Selection | None:
        """A list read's selection (order, page, total), or None when the source has none."""
        source = await self._get()
        return await source.select(entity, route, params, query, reader) if hasattr(source, "select") else None

    async def list_keys(self, entity: Entity, route: Route, params: Mapping[str, str]) -> set[str]:
        return await (await self._get()).list_keys(entity, route, params)

    async def close(self) -> None:
        await self._tasks.close()  # an opening still under way
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.close()
            self._source = None


def default_sources(config: Config) -> dict[str, LazySource]:
    """The sources the config names, opened lazily."""
    sources: dict[str, LazySource] = {}
    pg, mongo, mongo_db = config.pg, config.mongo, config.mongo_db
    if pg:
        async def open_postgres() -> Source:
            from shadow.replay.sources.postgres import PostgresSource

            # one connection per worker, plus one for the recheck task
            return await PostgresSource.create(pg, statement_timeout=config.source_timeout,
                                               pool_size=config.workers + 1)

        sources["postgres"] = LazySource("postgres", open_postgres)
    if mongo and mongo_db:  # Config refuses --mongo without --mongo-db
        async def open_mongo() -> Source:
            from shadow.replay.sources.mongo import MongoSource

            return MongoSource(mongo, mongo_db, timeout=config.source_timeout)

        sources["mongo"] = LazySource("mongo", open_mongo)
    return sources


__all__ = ["SOURCE_RETRY_SECONDS", "LazySource", "default_sources"]

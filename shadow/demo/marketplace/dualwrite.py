"""The second leg of the production dual write, for the sample API's dual-write mode.

Runs after the sample API's `PATCH /api/payments/{id}` has written Mongo: the same change
goes to PostgreSQL `lag` seconds later, off the request; a PG failure is only logged —
which is how PG comes to lag or miss writes (transient / persistent mismatches).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger(__name__)


class DualWrite:
    """The second leg of the dual write: PostgreSQL after Mongo, `lag` seconds later;
    failures are logged, never surfaced (as in production)."""

    def __init__(self, pool: Any, lag: float) -> None:
        self.pool, self.lag = pool, lag
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(self, legacy_id: str, changes: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(legacy_id, changes), name=f"dual-write {legacy_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _write(self, legacy_id: str, changes: dict[str, Any]) -> None:
        await asyncio.sleep(self.lag)
        try:
            await self.pool.execute(
                "UPDATE payments SET status = COALESCE($2::payment_status, status),"
                " metadata = COALESCE($3::jsonb, metadata), updated_at = $4 WHERE legacy_object_id = $1",
                legacy_id, changes.get("status"),
                json.dumps(changes["metadata"]) if "metadata" in changes else None, changes["updatedAt"])
        except Exception:  # the dual write never fails the request; PG simply lags
            log.exception("dual write to PostgreSQL failed for payment %s", legacy_id)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

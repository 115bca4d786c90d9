"""The second leg of the production dual write, for the sample API's dual-write mode.

Runs after a sample API write has reached Mongo (`PATCH /api/payments/{id}`, and the
articles family's favorites, follows and tag lists): the same change goes to PostgreSQL
`lag` seconds later, off the request; a PG failure is only logged —
which is how PG comes to lag or miss writes (transient / persistent mismatches). The lag
is a fixed number or a LagTail: most writes land fast, a few seconds late (retries,
queue backlogs), as a real dual-write does. Writes of one row land in the order they
were made (a production dual-write keeps per-row order, or it would diverge for good).
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shadow.tasks import TaskSet

log = logging.getLogger(__name__)


@dataclass
class LagTail:
    """A dual-write lag with a realistic tail: `slow_share` of the writes land
    `slow` seconds late, the rest within `fast` (uniform in each range; seeded)."""

    fast: tuple[float, float] = (0.02, 0.4)
    slow: tuple[float, float] = (1.5, 3.0)
    slow_share: float = 0.15
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 <= self.fast[0] <= self.fast[1] and 0 <= self.slow[0] <= self.slow[1] and 0 <= self.slow_share <= 1):
            raise ValueError(f"bad lag tail: {self!r}")
        self._random = random.Random(self.seed)

    def __call__(self) -> float:
        low, high = self.slow if self._random.random() < self.slow_share else self.fast
        return self._random.uniform(low, high)

    def describe(self) -> str:
        return (f"{self.fast[0]:g}-{self.fast[1]:g}s, {self.slow_share:.0%} of writes "
                f"{self.slow[0]:g}-{self.slow[1]:g}s")


class DualWrite:
    """The second leg of the dual write: PostgreSQL after Mongo, `lag` seconds later (a
    number, or a LagTail drawn per write); failures are logged, never surfaced (as in
    production)."""

    def __init__(self, pool: Any, lag: float | Callable[[], float]) -> None:
        self.pool = pool
        self.lag: Callable[[], float] = lag if callable(lag) else (lambda: float(lag))
        self.tasks = TaskSet("dual-write")
        self._last: dict[str, asyncio.Task[None]] = {}  # row -> its latest write (the next one waits for it)
        self.landed = 0  # writes that reached PostgreSQL (or failed there), for tests and the demo

    def schedule(self, legacy_id: str, changes: dict[str, Any]) -> None:
        """A payment's PATCH, as its PostgreSQL UPDATE."""
        self.later(f"payments:{legacy_id}",
                   "UPDATE payments SET status = COALESCE($2::payment_status, status),"
                   " metadata = COALESCE($3::jsonb, metadata), updated_at = $4 WHERE legacy_object_id = $1",
                   legacy_id, changes.get("status"),
                   json.dumps(changes["metadata"]) if "metadata" in changes else None, changes["updatedAt"])

    def later(self, row: str, statement: str, *args: Any) -> None:
        """Run `statement` on PostgreSQL after the lag, after the earlier writes of `row`."""
        previous = self._last.get(row)
        task = self.tasks.spawn(self._write(row, previous, statement, args), row)
        self._last[row] = task
        task.add_done_callback(lambda done: self._last.pop(row, None) if self._last.get(row) is done else None)

    async def _write(self, row: str, previous: asyncio.Task[None] | None, statement: str,
                     args: tuple[Any, ...]) -> None:
        await asyncio.sleep(self.lag())
        if previous is not None:
            await asyncio.wait([previous])  # per-row order; its failure is its own (logged there)
        try:
            await self.pool.execute(statement, *args)
        except Exception:  # the dual write never fails the request; PG simply lags
            log.exception("dual write to PostgreSQL failed for %s", row)
        finally:
            self.landed += 1

    async def settled(self) -> None:
        """Wait until every write made so far has landed (or failed)."""
        await self.tasks.join()

    async def close(self) -> None:
        await self.tasks.close()

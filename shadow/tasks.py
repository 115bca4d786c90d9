"""Named background tasks with references kept (no bare `asyncio.create_task`: ruff's
banned-api check, configured in pyproject.toml, refuses it in shadow/ and normalizers/).

The event loop keeps only weak references to tasks, so a fire-and-forget task can be
garbage-collected mid-flight; and an exception in one is silently lost until the task
is collected. `TaskSet.spawn` keeps a reference until the task ends, names it, and logs
a crash with the task's name.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("shadow.tasks")
T = TypeVar("T")


class TaskSet:
    """The background tasks of one component; `close()` cancels and awaits them all."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s crashed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self) -> None:
        """Wait until every task spawned so far has ended (none is cancelled)."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks)

    async def close(self) -> None:
        """Cancel every task still running and wait until they have all ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

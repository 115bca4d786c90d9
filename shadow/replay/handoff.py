"""The proxy's side of the shadow worker processes: hands captured reads to them and
publishes what they report.

    proxy ──admit()/offer()──▶ Handoff ──shard by key──▶ Link i ══ Unix socket ══▶ worker i
    Sink ◀── Published / Counts / Raised / Explained ◀══════════════╝ (Relay)

The shadow computation (parse, fetch, rebuild, compare, recheck, explain) runs in N
child processes (`python -m shadow.replay.worker`, niced, dying with their parent), so
its CPU never competes with the proxy's event loop for the GIL. A read goes to the
worker of its route's key (a hash of the path parameters), so batching and rechecks of
a key stay in one worker. This process keeps the proxy, the rules for capture
decisions, the one Sink and the admin server. Messages are messages.ToWorker /
messages.ToProxy, dispatched in one place on each side.

`offer()` never waits: reads wait up to FLUSH_SECONDS (or until a batch is full) and
leave as one frame per worker, written to the socket's asyncio transport; when its
unsent bytes would pass the worker's share of `buffer_limit` the read is dropped and
counted (`queue_full`). While a worker is down (crashed, restarting) its reads are
dropped and counted (`worker_down`); a worker that dies is counted as
`shadow_errors_total{stage="worker"}` and restarted alone, with backoff, while the
others go on. Clients never notice any of it.
"""
from __future__ import annotations

import asyncio
import itertools

from shadow.config import Config
from shadow.model import DropReason, WorkerState
from shadow.replay.link import FLUSH_SECONDS, READ_OVERHEAD, WORKER_DOWN, Link
from shadow.replay.messages import Drain, MainSink, Rules
from shadow.replay.pipeline import admit
from shadow.replay.sampling import TokenBucket
from shadow.replay.settings import shadow_workers
from shadow.rules.load import RuleSet
from shadow.rules.spec import RouteMatch
from shadow.shadowside import CapturedRead
from shadow.tasks import TaskSet

#: unsent bytes the proxy keeps for all its workers together at most: the workers queue
#: reads themselves, this only absorbs the moments a worker is not scheduled
MAX_UNSENT_BYTES = 16 * 1024 * 1024


def buffer_limit(config: Config) -> int:
    """Unsent bytes the proxy lets wait for its workers before dropping reads: room for
    a queue's worth of typical reads (16 KiB each), at most MAX_UNSENT_BYTES, and never
    less than four of the largest bodies copied."""
    return max(4 * (config.max_body_bytes + READ_OVERHEAD), min(MAX_UNSENT_BYTES, config.queue_size * 16 * 1024))


class Handoff:
    """What the proxy hands captured reads to in worker mode (the same `admit`, `offer`,
    `drain`, `close`, `sink` surface as an in-process Pipeline)."""

    def __init__(self, config: Config, sink: MainSink, workers: int | None = None) -> None:
        self.config = config
        self.sink = sink
        self.buffer_limit = buffer_limit(config)
        self._limit = TokenBucket(config.rate_limit)
        count = workers if workers is not None else shadow_workers(config)
        share = max(4 * (config.max_body_bytes + READ_OVERHEAD), self.buffer_limit // count)
        self.links = [Link(self, index, share) for index in range(count)]
        self._batch = max(1, config.batch_size)
        self._drains: dict[int, tuple[asyncio.Future[bool], set[int]]] = {}
        self._tokens = itertools.count(1)
        self.closed = False
        self.tasks = TaskSet("handoff")
        sink.watch_queue(config.queue_size, self._queue_depth)

    def _queue_depth(self) -> int:
        return sum(link.depth + len(link.pending) for link in self.links)

    @property
    def worker_pid(self) -> int | None:
        """The first worker's process id (None while it is down)."""
        return self.links[0].pid

    @property
    def worker_pids(self) -> list[int | None]:
        """Every worker's process id, in shard order (None while one is down)."""
        return [link.pid for link in self.links]

    def worker_states(self) -> list[WorkerState]:
        """Every worker's state, in shard order (for /readyz and /metrics)."""
        return [link.state() for link in self.links]

    @property
    def unsent_bytes(self) -> int:
        """Bytes of reads and messages waiting to be written to the workers."""
        return sum(link.unsent_bytes for link in self.links)

    # ------------------------------------------------------------------ request path

    def admit(self, match: RouteMatch) -> bool:
        """Copy this matched read's body? (sampling and rate limit, decided here)"""
        return admit(match, self._limit, self.sink)

    def offer(self, read: CapturedRead) -> bool:
        """Send a read to its worker without waiting; dropped and counted when the
        sidecar is stopping, the worker is down, or too many bytes wait already."""
        if self.closed:
            route = read.match.route
            self.sink.dropped(DropReason.SHUTDOWN, route.entity, route.name)
            return False
        links = self.links
        if len(links) == 1:
            return links[0].offer(read, self._batch)
        params = read.match.params
        shard = hash(tuple(params.values())) if params else hash(read.match.route.name)
        return links[shard % len(links)].offer(read, self._batch)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_ready: bool = True) -> None:
        """Start every worker process. wait_ready=False returns once they are connected;
        their readiness (rules loaded, database connections warmed) is awaited and logged
        in the background."""
        await asyncio.gather(*(link.start(wait_ready) for link in self.links))

    def rules_changed(self, rules: RuleSet) -> None:
        """The main process loaded new rules: the workers load the same directory."""
        for link in self.links:
            if link.transport is not None:
                link.send(Rules(rules.version))

    async def drain(self, timeout: float) -> bool:
        """Wait until every worker has nothing queued, processed or waiting for a
        recheck, and everything they reported has been published here. False on
        timeout or when a worker is down."""
        live = [link for link in self.links if link.transport is not None]
        if len(live) < len(self.links):
            return False
        token = next(self._tokens)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._drains[token] = (answer, {link.index for link in live})
        for link in live:
            link.send(Drain(token, timeout))
        try:
            return await asyncio.wait_for(answer, timeout + 1.0)
        except TimeoutError:
            return False
        finally:
            self._drains.pop(token, None)

    def drained(self, link: Link, token: int, idle: bool) -> None:
        waiting = self._drains.get(token)
        if waiting is None or waiting[0].done():
            return
        answer, links = waiting
        if not idle:
            answer.set_result(False)
            return
        links.discard(link.index)
        if not links:
            answer.set_result(True)

    def link_lost(self, link: Link) -> None:
        for answer, links in self._drains.values():
            if link.index in links and not answer.done():
                answer.set_result(False)

    async def close(self) -> None:
        """Tell the workers to stop (each finishes briefly, then drops the rest as
        `shutdown`), wait for them, kill one that does not exit in time."""
        if self.closed:
            return
        self.closed = True
        await self.tasks.close()  # pending restarts
        await asyncio.gather(*(link.close() for link in self.links))


__all__ = ["FLUSH_SECONDS", "WORKER_DOWN", "Handoff", "Link", "buffer_limit"]

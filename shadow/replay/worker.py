"""The shadow worker process: runs the Pipeline (queue, sampling, batching, sources,
recheck, explain) in its own event loop, away from the proxy's.

Started by the proxy process (shadow/replay/handoff.py) as `python -m shadow.replay.worker
--fd N` with one end of a Unix socket pair; there may be several, each given the reads
of its share of the keys. It reads frames of `messages.ToWorker` — `Start` (the
Config), `Read` (captured reads, many per frame), `Rules` (reload the rules directory;
a bad edit keeps the last good rules), `Drain`, `Stop` — and answers with
`messages.ToProxy`: its pipeline reports to a `Relay` (shadow/replay/relay.py), which
counts common outcomes and ships them as periodic `Counts` deltas. It lowers its own
priority (`--shadow-nice`), ignores SIGINT (the main process decides when it stops),
and exits on SIGTERM, on `Stop`, or when the socket closes (its parent is gone).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, assert_never

from shadow.config import Config
from shadow.model import Failure, Stage
from shadow.replay.messages import (
    Depth,
    Drain,
    Drained,
    FrameReader,
    Read,
    Ready,
    Rules,
    Start,
    Stop,
    ToProxy,
    ToWorker,
    frame,
)
from shadow.replay.pipeline import Pipeline
from shadow.replay.relay import DOCUMENTS_PER_SECOND, Relay
from shadow.replay.sampling import TokenBucket
from shadow.replay.settings import pipeline_settings, recheck_upstream
from shadow.rules import RuleSet
from shadow.rules.spec import Route
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from shadow.replay.sources.lazy import LazySource

log = logging.getLogger("shadow.replay.worker")

#: how often the worker reports its counted outcomes and its queue depth
REPORT_SECONDS = 0.25
#: how long the worker waits for its sources to open before it says it is ready
WARM_UP_SECONDS = 10.0
#: allocations between young collections, and how many of those per older one (default 700, 10, 10)
GC_THRESHOLDS = (10000, 20, 20)


class ShadowWorker(asyncio.Protocol):
    """The worker's end of the socket: builds the pipeline on `Start`, feeds it reads."""

    def __init__(self, stopped: asyncio.Event) -> None:
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._outbox: list[ToProxy] = []
        self._flush_scheduled = False
        self.stopped = stopped
        self.stop_drain = 0.0
        self.config: Config | None = None
        self.pipeline: Pipeline | None = None
        self.sources: dict[str, LazySource] = {}
        self.sink = Relay(self.send)
        self.rules: RuleSet | None = None
        self._routes: dict[str, Route] = {}
        self.tasks = TaskSet("worker")
        self.gone = asyncio.Event()  # the socket is closed

    # ------------------------------------------------------------------ socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.gone.set()
        self.stopped.set()  # the main process is gone: nobody to report to

    def send(self, message: ToProxy) -> None:
        self._outbox.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._outbox and self._transport is not None:
            batch, self._outbox = self._outbox, []
            self._transport.write(frame(batch))

    def report(self) -> None:
        """Send what was counted since the last report, now (before the rest of the outbox)."""
        counts = self.sink.counts()
        if counts is not None:
            self.send(counts)

    def data_received(self, data: bytes) -> None:
        for batch in self._reader.feed(data):
            for message in batch:
                self._handle(message)

    # ------------------------------------------------------------------ messages

    def _handle(self, message: ToWorker) -> None:
        """The one dispatch of what the proxy process sends."""
        match message:
            case Read():
                self._offer(message)
            case Start(config=config, tracing=tracing, shards=shards):
                self.sink.tracing = tracing
                self.sink.every_outcome = config.report_every_outcome
                self.sink.documents = ((TokenBucket(DOCUMENTS_PER_SECOND), TokenBucket(DOCUMENTS_PER_SECOND))
                                       if config.evidence else None)
                self._start(config, shards)
            case Rules(version=version):
                self._reload(version)  # at once: the reads behind this message may need new routes
            case Drain(token=token, timeout=timeout):
                self.tasks.spawn(self._drain(token, timeout), f"drain-{token}")
            case Stop(drain_seconds=seconds):
                self.stop_drain = seconds
                self.stopped.set()
            case _:
                assert_never(message)

    def _start(self, config: Config, shards: int) -> None:
        from shadow.compare.diff import compare
        from shadow.compare.explain import explain
        from shadow.replay.sources.lazy import default_sources

        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        with_nice(config.shadow_nice)
        self._use_rules(load(config))
        self.sources = default_sources(config)
        self.pipeline = Pipeline(pipeline_settings(config, rate_limited_before=True, shards=shards), self.sink,
                                 lambda: self.rules, self.sources, compare, explain, upstream=recheck_upstream(config))
        self.pipeline.start()
        self.tasks.spawn(self._report(), "report")
        self.tasks.spawn(self._warm_up(), "warm-up")

    async def _warm_up(self) -> None:
        """Open the sources the rules read before saying ready, so the first reads do not
        pay for it. A source no route reads stays closed (and its driver unloaded: each is
        15-20 MB of resident memory per worker) until a reload starts reading it."""
        used = sources_in_use(self.rules)
        await asyncio.gather(*(source.warm(WARM_UP_SECONDS) for name, source in self.sources.items()
                               if name in used))
        settle_garbage_collector()
        self.send(Ready(getattr(self.rules, "version", None)))

    def _use_rules(self, rules: RuleSet | None) -> None:
        if rules is not None:
            self.rules = rules
            self._routes = {route.name: route for route in rules.routes}

    def _offer(self, read: Read) -> None:
        route = self._routes.get(read.route)
        if route is None or self.pipeline is None:
            self.sink.raised(Failure(Stage.HANDOFF, "LookupError", f"route {read.route!r} is not in the worker's "
                                     f"rules (version {getattr(self.rules, 'version', None)})"))
            return
        self.pipeline.take(route, read)  # as it came: the pipeline queues the wire message

    def _reload(self, version: str | None) -> None:
        """Load the rules directory the proxy just reloaded (blocking this loop briefly
        is fine: it is not the proxy's); a bad edit keeps the last good rules."""
        assert self.config is not None
        rules = load(self.config)
        self._use_rules(rules)
        if rules is not None and version is not None and rules.version != version:
            log.warning("worker loaded rules version %s, the proxy has %s (files changed in between)",
                        rules.version, version)

    async def _drain(self, token: int, timeout: float) -> None:
        drained = await self.pipeline.drain(timeout) if self.pipeline is not None else True
        self.report()
        self.send(Drained(token, drained))

    async def _report(self) -> None:
        last = -1
        while True:
            self.report()
            depth = self.sink.depth()
            if depth != last:
                self.send(Depth(depth))
                last = depth
            await asyncio.sleep(REPORT_SECONDS)

    async def close(self) -> None:
        """Finish briefly, drop the rest (counted as shutdown), report it, exit."""
        if self.pipeline is not None:
            if self.stop_drain > 0 and self._transport is not None:
                await self.pipeline.drain(self.stop_drain)
            await self.pipeline.close()
        await self.tasks.close()
        for source in self.sources.values():
            try:
                await source.close()
            except Exception as problem:  # closing is best effort
                log.debug("closing a source failed: %s", problem)
        self.report()
        self.flush()
        if self._transport is not None:
            self._transport.close()  # after the buffered reports are written


def load(config: Config) -> RuleSet | None:
    """The rules of `config.rules`, or None (logged) when they do not load."""
    from shadow.replay.plans import load_compiled
    from shadow.rules.reload import describe_problems

    try:
        return load_compiled(config.rules, config.rules_policy)  # plans compiled at (re)load
    except Exception as problem:
        log.error("shadow worker: rules in %s rejected, keeping the last good ones:\n  %s", config.rules,
                  "\n  ".join(describe_problems(problem)))
        return None


def settle_garbage_collector() -> None:
    """What is loaded at start (rules, plans, modules) lives as long as the worker: move
    it out of the collector's sight (gc.freeze) and collect young objects less often,
    so a read's short-lived documents do not make it rescan the long-lived heap."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def with_nice(increment: int) -> None:
    """Lower this process's priority so the kernel always prefers the proxy."""
    if increment:
        try:
            os.nice(increment)
        except OSError as problem:
            log.warning("cannot lower the shadow worker's priority by %d: %s", increment, problem)


def sources_in_use(rules: RuleSet | None) -> set[str]:
    """The sources a rules set reads: each route's own, and mongo where a recheck
    re-reads its control there."""
    used: set[str] = set()
    for route in getattr(rules, "routes", ()):
        used.add(route.source)
        if route.recheck.control == "mongo":
            used.add("mongo")
    return used


PARENT_CHECK_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None) -> bool:
    """Ask the kernel for SIGTERM when the parent goes (set by the worker itself at
    startup, not between fork and exec in a threaded parent); False when the parent is
    already gone (it died before we could ask)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except OSError as problem:  # not Linux: the periodic parent check still stops us
        log.warning("no parent-death signal (%s); relying on the parent check", problem)
    return parent is None or os.getppid() == parent


async def _watch_parent(parent: int, stopped: asyncio.Event) -> None:
    """Belt and braces for the parent-death signal: stop once we are re-parented."""
    while not stopped.is_set():
        if os.getppid() != parent:
            log.warning("the main process (pid %d) is gone; stopping", parent)
            stopped.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), PARENT_CHECK_SECONDS)


async def serve(fd: int, parent: int | None = None) -> int:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    worker = ShadowWorker(stopped)
    await loop.create_unix_connection(lambda: worker, sock=socket.socket(fileno=fd))
    tasks = TaskSet("worker-main")
    watcher = tasks.spawn(_watch_parent(parent, stopped), "watch-parent") if parent is not None else None
    await stopped.wait()
    if watcher is not None:
        await watcher
    await worker.close()
    try:  # the transport closes once the buffered reports are written
        await asyncio.wait_for(worker.gone.wait(), 5.0)
    except TimeoutError:
        log.warning("the main process did not take the last reports in time")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shadow.replay.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited Unix socket to the main process")
    parser.add_argument("--parent", type=int, default=None, help="the main process's pid: stop when it is gone")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    level = os.environ.get("SHADOW_LOG_LEVEL", "info").upper()
    logging.basicConfig(level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s")
    if not die_with_parent(args.parent):
        log.warning("the main process (pid %s) was gone before the worker started", args.parent)
        return 0
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(args.fd, args.parent))
    return uvloop.run(serve(args.fd, args.parent))


if __name__ == "__main__":
    sys.exit(main())

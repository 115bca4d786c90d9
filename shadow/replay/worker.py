"""The shadow worker process: runs the Pipeline (queue, sampling, rate limit, batching,
sources, recheck, explain) in its own event loop, away from the proxy's.

Started by the sidecar (shadow/handoff.py) as `python -m shadow.replay.worker --fd N` with one
end of a Unix socket pair. It reads length-prefixed pickle frames from the main
process — `start` (the Config), `read` (a captured read), `rules` (reload the rules
directory; a bad edit keeps the last good rules), `drain`, `stop` — and answers with
the sink calls of its pipeline, relayed by `RemoteSink` to the one Sink of the main
process. It lowers its own priority (`--shadow-nice`), ignores SIGINT (the main
process decides when it stops), and exits on SIGTERM, on `stop`, or when the socket
closes (its parent is gone).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from multidict import CIMultiDict, MultiDict
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shadow.proxy.capture import CapturedRead
from shadow.config import Config
from shadow.replay.handoff import FrameReader, frame
from shadow.model import Comparison, FieldDiff, Outcome, ShadowJob, SkipReason
from shadow.replay.control import UpstreamControl
from shadow.replay.pipeline import Pipeline, PipelineSettings
from shadow.publish.sink import NOTEWORTHY
from shadow.rules import RouteMatch

log = logging.getLogger("shadow.replay.worker")

DEPTH_REPORT_SECONDS = 0.25
#: how long the worker waits for its sources to open before it says it is ready
WARM_UP_SECONDS = 10.0
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """Stands for the main process's ring entry of a mismatch, for a later `explained`."""

    id: int
    entity: str


def trace_headers(context: Any) -> tuple[tuple[str, str], ...]:
    """The W3C headers of a trace context (a Context does not cross processes)."""
    if context is None:
        return ()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return tuple(carrier.items())


class RemoteSink:
    """The Sink methods the Pipeline calls, each sent as a message to the main process
    (batched per loop iteration). Control and candidate documents travel only where
    the main Sink uses them (a missing key's control)."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send
        self._handles = itertools.count(1)
        self.depth: Callable[[], int] = lambda: 0

    def publish(self, comparison: Comparison, job: ShadowJob | None = None) -> RemoteEntry | None:
        outcome = comparison.outcome
        slim = replace(comparison, candidate=None, control=comparison.control if outcome is Outcome.MISSING else None)
        job_info = None if job is None else (job.entity, job.route, job.source, job.enqueued_at, trace_headers(job.trace_context))
        handle = next(self._handles) if outcome in NOTEWORTHY else None
        self._send(("publish", slim, job_info, handle))
        return RemoteEntry(handle, comparison.entity) if handle is not None else None

    def skipped(self, entity: str, route: str, reason: SkipReason) -> None:
        self._send(("skipped", entity, route, reason))

    def dropped(self, reason: SkipReason | str, entity: str | None = None, route: str | None = None) -> None:
        self._send(("dropped", reason, entity, route))

    def raised(self, stage: str, error: BaseException | str, entity: str | None = None) -> None:
        if isinstance(error, BaseException):  # exceptions need not pickle (asyncpg's do not)
            log.debug("shadow %s failed", stage, exc_info=error)
            error = f"{type(error).__name__}: {error}"
        self._send(("raised", stage, error, entity))

    def explained(self, entry: RemoteEntry, diffs: list[FieldDiff]) -> None:
        self._send(("explained", entry.id, list(diffs)))

    def observe_stage(self, entity: str, stage: str, seconds: float) -> None:
        self._send(("stage", entity, stage, seconds))

    def noisy(self, entity: str, route: str, paths: list[str]) -> None:
        self._send(("noisy", entity, route, list(paths)))

    def watch_queue(self, capacity: int, depth: Callable[[], int]) -> None:
        self.depth = depth  # reported every DEPTH_REPORT_SECONDS


class ShadowWorker(asyncio.Protocol):
    """The worker's end of the socket: builds the pipeline on `start`, feeds it reads."""

    def __init__(self, stopped: asyncio.Event) -> None:
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._outbox: list[tuple[Any, ...]] = []
        self._flush_scheduled = False
        self.stopped = stopped
        self.stop_drain = 0.0
        self.config: Config | None = None
        self.pipeline: Pipeline | None = None
        self.sources: dict[str, Any] = {}
        self.sink = RemoteSink(self.send)
        self.rules: Any = None
        self._routes: dict[str, Any] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.gone = asyncio.Event()  # the socket is closed

    # ------------------------------------------------------------------ socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.gone.set()
        self.stopped.set()  # the main process is gone: nobody to report to

    def send(self, message: tuple[Any, ...]) -> None:
        self._outbox.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._outbox and self._transport is not None:
            batch, self._outbox = self._outbox, []
            self._transport.write(frame(batch))

    def data_received(self, data: bytes) -> None:
        for batch in self._reader.feed(data):
            for message in batch:
                self._handle(message)

    # ------------------------------------------------------------------ messages

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "read":
            self._offer(message)
        elif kind == "start":
            self._start(message[1])
        elif kind == "rules":
            self._reload(message[1])  # at once: the reads behind this message may need new routes
        elif kind == "drain":
            self._spawn(self._drain(message[1], message[2]))
        elif kind == "stop":
            self.stop_drain = message[1]
            self.stopped.set()
        else:
            log.warning("unknown message %r from the main process", kind)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start(self, config: Config) -> None:
        from shadow.compare.diff import compare
        from shadow.compare.explain import explain
        from shadow.sidecar import default_sources

        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        with_nice(config.shadow_nice)
        self._use_rules(load(config))
        self.sources = default_sources(config)
        self.pipeline = Pipeline(
            PipelineSettings(queue_size=config.queue_size, workers=config.workers, batch_size=config.batch_size,
                             source_timeout=config.source_timeout, rate_limit=0.0,  # the proxy applied it
                             explain_rate=config.explain_rate, recheck_capacity=config.queue_size,
                             queue_bytes=max(64 * 1024 * 1024, 4 * config.max_body_bytes)),
            self.sink, lambda: self.rules, self.sources, compare, explain,  # type: ignore[arg-type]
            upstream=UpstreamControl(config.upstream, config.source_timeout))
        self.pipeline.start()
        self._spawn(self._report_depth())
        self._spawn(self._warm_up(config))

    async def _warm_up(self, config: Config) -> None:
        """Open the sources before saying ready, so the first reads do not pay for it."""
        await asyncio.gather(*(source.warm(WARM_UP_SECONDS) for source in self.sources.values()))
        self.send(("ready", getattr(self.rules, "version", None)))

    def _use_rules(self, rules: Any) -> None:
        if rules is not None:
            self.rules = rules
            self._routes = {route.name: route for route in rules.routes}

    def _offer(self, message: tuple[Any, ...]) -> None:
        (_, route_name, params, query, headers, body, content_type, content_encoding, trace, enqueued_at) = message
        route = self._routes.get(route_name)
        if route is None or self.pipeline is None:
            self.sink.raised("handoff", f"route {route_name!r} is not in the worker's rules "
                                        f"(version {getattr(self.rules, 'version', None)})")
            return
        self.pipeline.offer(CapturedRead(
            match=RouteMatch(route, dict(params)), query=MultiDict(query), headers=CIMultiDict(headers), body=body,
            content_type=content_type, content_encoding=content_encoding, trace_headers=trace,
            enqueued_at=enqueued_at))

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
        self.send(("drained", token, drained))

    async def _report_depth(self) -> None:
        last = -1
        while True:
            depth = self.sink.depth()
            if depth != last:
                self.send(("depth", depth))
                last = depth
            await asyncio.sleep(DEPTH_REPORT_SECONDS)

    async def close(self) -> None:
        """Finish briefly, drop the rest (counted as shutdown), report it, exit."""
        if self.pipeline is not None:
            if self.stop_drain > 0 and self._transport is not None:
                await self.pipeline.drain(self.stop_drain)
            await self.pipeline.close()
        for task in list(self._background):
            task.cancel()
        for source in self.sources.values():
            try:
                await source.close()
            except Exception as problem:  # closing is best effort
                log.debug("closing a source failed: %s", problem)
        self.flush()
        if self._transport is not None:
            self._transport.close()  # after the buffered reports are written


def load(config: Config) -> Any:
    """The rules of `config.rules`, or None (logged) when they do not load."""
    from shadow.rules.reload import default_loader, describe_problems

    try:
        return default_loader(config.rules, config.rules_policy)
    except Exception as problem:
        log.error("shadow worker: rules in %s rejected, keeping the last good ones:\n  %s", config.rules,
                  "\n  ".join(describe_problems(problem)))
        return None


def with_nice(increment: int) -> None:
    """Lower this process's priority so the kernel always prefers the proxy."""
    if increment:
        try:
            os.nice(increment)
        except OSError as problem:
            log.warning("cannot lower the shadow worker's priority by %d: %s", increment, problem)


async def serve(fd: int) -> int:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    worker = ShadowWorker(stopped)
    await loop.create_unix_connection(lambda: worker, sock=socket.socket(fileno=fd))
    await stopped.wait()
    await worker.close()
    try:  # the transport closes once the buffered reports are written
        await asyncio.wait_for(worker.gone.wait(), 5.0)
    except (TimeoutError, asyncio.TimeoutError):
        log.warning("the main process did not take the last reports in time")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shadow.replay.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited Unix socket to the main process")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    level = os.environ.get("SHADOW_LOG_LEVEL", "info").upper()
    logging.basicConfig(level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(args.fd))
    return uvloop.run(serve(args.fd))


if __name__ == "__main__":
    sys.exit(main())

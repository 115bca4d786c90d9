"""One shadow worker process as the proxy process sees it: its socket, its unsent reads
(batched into frames), its restarts, and the one dispatch of what it reports
(messages.ToProxy) onto the proxy's Sink. The Handoff (handoff.py) owns one Link per
worker and shards reads between them."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Protocol, assert_never

from shadow.model import DropReason, Failure, RecentMismatch, Stage, WorkerState
from shadow.replay.messages import (
    Counts,
    Depth,
    Drained,
    Explained,
    FrameReader,
    MainSink,
    Noisy,
    Published,
    Raised,
    Read,
    Ready,
    Start,
    Stop,
    ToProxy,
    ToWorker,
    frame,
    read_message,
)
from shadow.shadowside import CapturedRead

if TYPE_CHECKING:
    from shadow.config import Config
    from shadow.tasks import TaskSet

log = logging.getLogger("shadow.replay.handoff")

#: bytes a captured read costs on the wire besides its body (headers, params, pickling)
READ_OVERHEAD = 512
#: how long a read may wait for others to share its frame (shadow latency, not the client's)
FLUSH_SECONDS = 0.1
RESTART_MIN_SECONDS = 0.25
RESTART_MAX_SECONDS = 10.0
#: a worker up this long has recovered: the next crash restarts it after the minimum again
HEALTHY_UPTIME_SECONDS = 30.0
#: on stop, how long the worker may finish what is queued before the rest is dropped
STOP_DRAIN_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 10.0
#: how long start() waits for the worker to load rules and say it is ready
READY_TIMEOUT_SECONDS = 30.0
#: ring entries a worker may still attach a deepdiff explanation to
MAX_EXPLAINABLE = 4096
WORKER_DOWN = DropReason.WORKER_DOWN
#: bytes of a worker's stderr kept to say why it went away (the end of a traceback)
STDERR_TAIL_BYTES = 4096
#: how long a restart waits for the dead worker's last stderr bytes
STDERR_EOF_SECONDS = 1.0


def _reap(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the worker to exit; kill it after `timeout`. Its exit code."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class _Connection(asyncio.Protocol):
    """One worker's socket, as seen from the main process."""

    def __init__(self, link: Link, generation: int) -> None:
        self._link = link
        self._generation = generation
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        for batch in self._reader.feed(data):
            self._link.received(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.lost(self._generation, exc)


class _Stderr(asyncio.Protocol):
    """A worker's stderr: passed on to ours as it comes (its logs), its end kept so that
    a worker that dies (an import error, a crash) says why on /readyz and /metrics."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self.tail = b""
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):  # our own stderr closed: keep the tail anyway
            binary: IO[bytes] | None = getattr(self._out, "buffer", None)  # None: a text-only stream (embedders)
            if binary is not None:
                binary.write(data)
                binary.flush()
            else:
                self._out.write(data.decode("utf-8", "replace"))
                self._out.flush()
        self.tail = (self.tail + data)[-STDERR_TAIL_BYTES:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def last_line(self) -> str | None:
        lines = [line.strip() for line in self.tail.decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1] if lines else None


class Owner(Protocol):
    """What a Link needs of the Handoff that owns it (handoff.py), named here so the two
    modules do not import each other."""

    config: Config
    sink: MainSink
    tasks: TaskSet
    closed: bool

    @property
    def links(self) -> Sequence[Link]: ...

    def drained(self, link: Link, token: int, idle: bool) -> None: ...

    def link_lost(self, link: Link) -> None: ...


class Link:
    """One shadow worker process: its socket, its unsent reads, its restarts."""

    def __init__(self, handoff: Owner, index: int, buffer_limit: int) -> None:
        self.handoff = handoff
        self.index = index
        self.buffer_limit = buffer_limit
        self.sink = handoff.sink
        self.transport: asyncio.Transport | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.depth = 0  # the worker's queue depth, as it last reported
        self.pending: list[ToWorker] = []
        self.pending_bytes = 0
        self._flush: asyncio.TimerHandle | None = None
        self._generation = 0
        self._started_at = 0.0
        self._backoff = RESTART_MIN_SECONDS
        self._explainable: collections.OrderedDict[int, RecentMismatch] = collections.OrderedDict()
        self._ready: asyncio.Future[str | None] | None = None
        self._stderr: _Stderr | None = None
        self._stderr_pipe: asyncio.ReadTransport | None = None
        self.gone = asyncio.Event()
        self.ready = False  # said Ready since it last started
        self.restarts = 0
        self.last_error: str | None = None

    def state(self) -> WorkerState:
        return WorkerState(self.index, self.pid, self.ready, self.restarts, self.last_error)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.transport is not None else None

    @property
    def unsent_bytes(self) -> int:
        return (self.transport.get_write_buffer_size() if self.transport is not None else 0) + self.pending_bytes

    # ------------------------------------------------------------------ sending

    def offer(self, read: CapturedRead, batch_size: int) -> bool:
        transport = self.transport
        if transport is None:
            self.sink.dropped(WORKER_DOWN)
            return False
        size = len(read.body) + READ_OVERHEAD
        if transport.get_write_buffer_size() + self.pending_bytes + size > self.buffer_limit:
            route = read.match.route
            self.sink.dropped(DropReason.QUEUE_FULL, route.entity, route.name)
            return False
        self.pending.append(read_message(read))
        self.pending_bytes += size
        if len(self.pending) >= batch_size:
            self.flush()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
        return True

    def flush(self) -> None:
        """Write what waits as one frame."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        if self.transport is None:
            for _ in (message for message in batch if isinstance(message, Read)):
                self.sink.dropped(WORKER_DOWN)
            return
        self.transport.write(frame(batch))

    def send(self, message: ToWorker) -> None:
        """A control message: now, behind the reads already waiting."""
        self.pending.append(message)
        self.flush()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_ready: bool = True) -> None:
        """Start the worker process (it loads the rules and opens its sources itself);
        wait_ready=False: its readiness is awaited in the background (Handoff.start)."""
        handoff = self.handoff
        self._generation += 1
        generation = self._generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # no preexec_fn (unsafe after fork in a threaded process): the worker sets its own
            # parent-death signal and watches --parent. Popen on the loop's thread, since
            # PDEATHSIG fires when the forking *thread* ends. -P: the current directory is not
            # put on sys.path, so a folder named `shadow` there cannot stand in for the package.
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "shadow.replay.worker", "--fd", str(theirs.fileno()),
                 "--parent", str(os.getpid())],
                pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE)
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        assert self.process.stderr is not None
        stderr = self._stderr = _Stderr(sys.stderr)
        self._stderr_pipe, _ = await loop.connect_read_pipe(lambda: stderr, self.process.stderr)
        self.ready = False
        transport, _ = await loop.create_unix_connection(lambda: _Connection(self, generation), sock=ours)
        self.transport = transport
        self.gone.clear()
        self._started_at = time.monotonic()
        self._explainable.clear()
        self._ready = loop.create_future()
        self.send(Start(handoff.config, handoff.sink.tracing.enabled, len(handoff.links)))
        if wait_ready:
            await self._await_ready(self.process, self._ready)
        else:
            handoff.tasks.spawn(self._await_ready(self.process, self._ready), f"worker-{self.index}-ready")

    async def _await_ready(self, process: subprocess.Popen[bytes], ready: asyncio.Future[str | None]) -> None:
        try:  # reads offered meanwhile wait in the socket; this only makes the start orderly
            version = await asyncio.wait_for(asyncio.shield(ready), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("shadow worker %d (pid %d) not ready after %gs; carrying on", self.index, process.pid,
                        READY_TIMEOUT_SECONDS)
            return
        if ready.result() is None and not self.ready:  # it went away before it was ready
            return
        log.info("shadow worker %d ready (pid %d, nice +%d, rules %s)", self.index, process.pid,
                 self.handoff.config.shadow_nice, version)

    def lost(self, generation: int, problem: Exception | None) -> None:
        if generation != self._generation:
            return
        self.transport = None
        self.depth = 0
        self.ready = False
        self.gone.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        self.handoff.link_lost(self)
        if self.handoff.closed:
            return
        if time.monotonic() - self._started_at > HEALTHY_UPTIME_SECONDS:
            self._backoff = RESTART_MIN_SECONDS
        pid = self.process.pid if self.process is not None else "?"
        self.restarts += 1
        self.last_error = f"went away ({problem or 'connection closed'})"
        self.sink.raised(Failure(Stage.WORKER, type(problem).__name__ if problem else "ConnectionClosed",
                                 f"shadow worker {self.index} (pid {pid}) went away "
                                 f"({problem or 'connection closed'}); restarting in {self._backoff:g}s, "
                                 "its reads are dropped until then", problem))
        self.handoff.tasks.spawn(self._restart(self._backoff), f"restart-{self.index}")
        self._backoff = min(self._backoff * 2, RESTART_MAX_SECONDS)

    async def _restart(self, delay: float) -> None:
        process, stderr = self.process, self._stderr
        if process is not None:
            code = await asyncio.to_thread(_reap, process, 1.0)
            log.warning("shadow worker %d (pid %d) exited with %s", self.index, process.pid, code)
            await self._stderr_closed()
            said = stderr.last_line() if stderr is not None else None
            self.last_error = f"exited with {code}" + (f": {said}" if said else "")
        await asyncio.sleep(delay)
        if self.handoff.closed:
            return
        try:
            await self.start()
        except Exception as problem:  # e.g. out of processes: try again, later
            self.sink.raised(Failure.of(Stage.WORKER, problem))
            self.handoff.tasks.spawn(self._restart(self._backoff), f"restart-{self.index}")
            self._backoff = min(self._backoff * 2, RESTART_MAX_SECONDS)

    async def close(self) -> None:
        process = self.process
        if self.transport is not None:
            self.send(Stop(STOP_DRAIN_SECONDS))
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self.gone.wait(), STOP_DRAIN_SECONDS + STOP_TIMEOUT_SECONDS)
            if self.transport is not None:
                self.transport.abort()
        if process is not None:
            await asyncio.to_thread(_reap, process, 1.0)
        await self._stderr_closed()

    async def _stderr_closed(self) -> None:
        """Wait for the dead worker's last stderr bytes (its pipe's end), briefly."""
        stderr, pipe = self._stderr, self._stderr_pipe
        if stderr is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stderr.closed.wait(), STDERR_EOF_SECONDS)
        if pipe is not None and not pipe.is_closing():
            pipe.close()

    # ------------------------------------------------------------------ reports

    def received(self, batch: list[ToProxy]) -> None:
        for message in batch:
            try:
                self.apply(message)
            except Exception as problem:  # one bad report must not cut the worker off
                self.sink.raised(Failure.of(Stage.HANDOFF, problem))

    def apply(self, message: ToProxy) -> None:
        """The one dispatch of what a worker reports, carried out on the real sink."""
        sink = self.sink
        match message:
            case Counts():
                sink.merge(message)
            case Published(comparison=comparison, job=job, handle=handle):
                entry = sink.publish(comparison, job)
                if handle is not None and entry is not None:
                    self._explainable[handle] = entry
                    if len(self._explainable) > MAX_EXPLAINABLE:
                        self._explainable.popitem(last=False)
            case Raised(failure=failure, entity=entity):
                sink.raised(failure, entity)
            case Noisy(entity=entity, route=route, paths=paths):
                sink.noisy(entity, route, paths)
            case Explained(handle=handle, diffs=diffs):
                entry = self._explainable.pop(handle, None)
                if entry is not None:
                    sink.explained(entry, diffs)
            case Ready(version=version):
                self.ready = True
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(version)
            case Depth(depth=depth):
                self.depth = depth
            case Drained(token=token, idle=idle):
                self.handoff.drained(self, token, idle)
            case _:
                assert_never(message)


__all__ = ["FLUSH_SECONDS", "READ_OVERHEAD", "WORKER_DOWN", "Link"]

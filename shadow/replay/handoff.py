"""The proxy's side of the shadow worker process: hands captured reads to it and
publishes what it reports.

    proxy ──admit()/offer()──▶ Handoff ══ Unix socket, pickle frames ══▶ shadow/worker.py
    Sink ◀── publish / skipped / dropped / raised / explained / stages ══╝ (RemoteSink)

The shadow computation (parse, fetch, rebuild, compare, recheck, explain) runs in a
child process (`python -m shadow.replay.worker`, niced, dying with its parent), so its CPU
never competes with the proxy's event loop for the GIL. This process keeps the proxy,
the rules for capture decisions, the one Sink and the admin server.

`offer()` never waits: reads are batched into one frame per loop iteration and written
to the socket's asyncio transport; when its unsent bytes would pass `buffer_limit` the
read is dropped and counted (`queue_full`), as a full in-process queue would. While the
worker is down (crashed, restarting) reads are dropped and counted (`worker_down`); a
worker that dies is counted as `shadow_errors_total{stage="worker"}` and restarted with
backoff. Clients never notice any of it.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import itertools
import logging
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from shadow.config import Config
from shadow.proxy.capture import CapturedRead
from shadow.model import ShadowJob, SkipReason
from shadow.replay.pipeline import admit
from shadow.publish.sink import RecentMismatch, Sink
from shadow.replay.sampling import TokenBucket
from shadow.tasks import TaskSet
from shadow.publish.tracing import request_context

log = logging.getLogger("shadow.replay.handoff")

FRAME_HEADER = struct.Struct("!I")
#: bytes a captured read costs on the wire besides its body (headers, params, pickling)
READ_OVERHEAD = 512
RESTART_MIN_SECONDS = 0.25
RESTART_MAX_SECONDS = 10.0
#: a worker up this long has recovered: the next crash restarts it after the minimum again
HEALTHY_UPTIME_SECONDS = 30.0
#: on stop, how long the worker may finish what is queued before the rest is dropped
STOP_DRAIN_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 10.0
#: how long start() waits for the worker to load rules and say it is ready
READY_TIMEOUT_SECONDS = 30.0
#: ring entries the worker may still attach a deepdiff explanation to
MAX_EXPLAINABLE = 4096
WORKER_DOWN = "worker_down"


# ----------------------------------------------------------------------------- wire


def frame(messages: list[tuple[Any, ...]]) -> bytes:
    """One length-prefixed pickle frame holding a batch of messages."""
    payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reassembles frames from a byte stream; `feed()` returns the complete batches."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[tuple[Any, ...]]]:
        buffer = self._buffer
        buffer += data
        batches = []
        start = 0
        size = FRAME_HEADER.size
        while len(buffer) - start >= size:
            (length,) = FRAME_HEADER.unpack_from(buffer, start)
            end = start + size + length
            if len(buffer) < end:
                break
            batches.append(pickle.loads(bytes(buffer[start + size:end])))
            start = end
        if start:
            del buffer[:start]
        return batches


def buffer_limit(config: Config) -> int:
    """Unsent bytes the proxy lets wait for the worker before dropping reads: room for
    a queue's worth of typical reads (16 KiB each), at most 64 MiB, and never less than
    four of the largest bodies copied."""
    return max(4 * (config.max_body_bytes + READ_OVERHEAD), min(64 * 1024 * 1024, config.queue_size * 16 * 1024))


def read_message(read: CapturedRead) -> tuple[Any, ...]:
    """A captured read as it crosses to the worker: the route by name, plain tuples."""
    match = read.match
    return ("read", match.route.name, tuple(match.params.items()), tuple(read.query.items()),
            tuple(read.headers.items()), read.body, read.content_type, read.content_encoding,
            read.trace_headers, read.enqueued_at)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _reap(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the worker to exit; kill it after `timeout`. Its exit code."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


# ----------------------------------------------------------------------------- main side


class _Connection(asyncio.Protocol):
    """One worker's socket, as seen from the main process."""

    def __init__(self, handoff: "Handoff", generation: int) -> None:
        self._handoff = handoff
        self._generation = generation
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        for batch in self._reader.feed(data):
            self._handoff._received(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self._handoff._lost(self._generation, exc)


class Handoff:
    """What the proxy hands captured reads to in worker mode (the same `admit`, `offer`,
    `drain`, `close`, `sink` surface as an in-process Pipeline)."""

    def __init__(self, config: Config, sink: Sink) -> None:
        self.config = config
        self.sink = sink
        self.buffer_limit = buffer_limit(config)
        self._limit = TokenBucket(config.rate_limit)
        self._transport: asyncio.Transport | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._started_at = 0.0
        self._backoff = RESTART_MIN_SECONDS
        self._pending: list[tuple[Any, ...]] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._depth = 0  # the worker's queue depth, as it last reported
        self._explainable: collections.OrderedDict[int, RecentMismatch] = collections.OrderedDict()
        self._drains: dict[int, asyncio.Future[bool]] = {}
        self._tokens = itertools.count(1)
        self._gone = asyncio.Event()
        self._ready: asyncio.Future[str | None] | None = None
        self._closed = False
        self._tasks = TaskSet("handoff")
        sink.watch_queue(config.queue_size, lambda: self._depth + len(self._pending))

    @property
    def worker_pid(self) -> int | None:
        """The running worker's process id (None while it is down)."""
        return self._process.pid if self._process is not None and self._transport is not None else None

    @property
    def unsent_bytes(self) -> int:
        """Bytes of reads and messages waiting to be written to the worker."""
        written = self._transport.get_write_buffer_size() if self._transport is not None else 0
        return written + self._pending_bytes

    # ------------------------------------------------------------------ request path

    def admit(self, match: Any) -> bool:
        """Copy this matched read's body? (sampling and rate limit, decided here)"""
        return admit(match, self._limit, self.sink)

    def offer(self, read: CapturedRead) -> bool:
        """Send a read to the worker without waiting; dropped and counted when the
        sidecar is stopping, the worker is down, or too many bytes wait already."""
        route = read.match.route
        if self._closed:
            self.sink.dropped(SkipReason.SHUTDOWN, route.entity, route.name)
            return False
        transport = self._transport
        if transport is None:
            self.sink.dropped(WORKER_DOWN)
            return False
        size = len(read.body) + READ_OVERHEAD
        if transport.get_write_buffer_size() + self._pending_bytes + size > self.buffer_limit:
            self.sink.dropped(SkipReason.QUEUE_FULL, route.entity, route.name)
            return False
        self._pending.append(read_message(read))
        self._pending_bytes += size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Write what this loop iteration queued as one frame."""
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        if self._transport is None:
            for _ in (message for message in batch if message[0] == "read"):
                self.sink.dropped(WORKER_DOWN)
            return
        self._transport.write(frame(batch))

    def _send(self, message: tuple[Any, ...]) -> None:
        self._pending.append(message)
        self._flush()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the worker process (it loads the rules and opens its sources itself)."""
        self._generation += 1
        generation = self._generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Popen on the loop's thread: PDEATHSIG fires when the forking *thread* ends
            self._process = subprocess.Popen(
                [sys.executable, "-m", "shadow.replay.worker", "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), preexec_fn=_die_with_parent)
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_unix_connection(lambda: _Connection(self, generation), sock=ours)
        self._transport = transport  # type: ignore[assignment]
        self._gone.clear()
        self._started_at = time.monotonic()
        self._explainable.clear()
        self._ready = loop.create_future()
        self._send(("start", self.config))
        try:  # reads offered meanwhile wait in the socket; this only makes the start orderly
            version = await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.TimeoutError):
            log.warning("shadow worker (pid %d) not ready after %gs; carrying on", self._process.pid, READY_TIMEOUT_SECONDS)
            return
        log.info("shadow worker ready (pid %d, nice +%d, rules %s)", self._process.pid, self.config.shadow_nice, version)

    def rules_changed(self, rules: Any) -> None:
        """The main process loaded new rules: the worker loads the same directory."""
        if self._transport is not None:
            self._send(("rules", getattr(rules, "version", None)))

    async def drain(self, timeout: float) -> bool:
        """Wait until the worker has nothing queued, processed or waiting for a recheck,
        and everything it reported has been published here. False on timeout."""
        if self._transport is None:
            return False
        token = next(self._tokens)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._drains[token] = answer
        self._send(("drain", token, timeout))
        try:
            return await asyncio.wait_for(answer, timeout + 1.0)
        except (TimeoutError, asyncio.TimeoutError):
            return False
        finally:
            self._drains.pop(token, None)

    async def close(self) -> None:
        """Tell the worker to stop (it finishes briefly, then drops the rest as
        `shutdown`), wait for it, kill it when it does not exit in time."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.close()  # a pending restart
        process = self._process
        if self._transport is not None:
            self._send(("stop", STOP_DRAIN_SECONDS))
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._gone.wait(), STOP_DRAIN_SECONDS + STOP_TIMEOUT_SECONDS)
            if self._transport is not None:
                self._transport.abort()
        if process is not None:
            await asyncio.to_thread(_reap, process, 1.0)

    # ------------------------------------------------------------------ worker side

    def _received(self, batch: list[tuple[Any, ...]]) -> None:
        for message in batch:
            try:
                self._apply(message)
            except Exception as problem:  # one bad report must not cut the worker off
                self.sink.raised("handoff", problem)

    def _apply(self, message: tuple[Any, ...]) -> None:
        """Carry out one report of the worker on the real sink."""
        sink = self.sink
        kind = message[0]
        if kind == "publish":
            _, comparison, job_info, handle = message
            job = None
            if job_info is not None:
                entity, route, source, enqueued_at, trace = job_info
                job = ShadowJob(entity, route, source, {}, enqueued_at=enqueued_at,
                                trace_context=request_context(dict(trace)) if trace else None)
            entry = sink.publish(comparison, job)
            if handle is not None and entry is not None:
                self._explainable[handle] = entry
                if len(self._explainable) > MAX_EXPLAINABLE:
                    self._explainable.popitem(last=False)
        elif kind == "stage":
            sink.observe_stage(message[1], message[2], message[3])
        elif kind == "noisy":
            sink.noisy(message[1], message[2], message[3])
        elif kind == "skipped":
            sink.skipped(message[1], message[2], message[3])
        elif kind == "dropped":
            sink.dropped(message[1], message[2], message[3])
        elif kind == "raised":
            sink.raised(message[1], message[2], message[3])
        elif kind == "explained":
            entry = self._explainable.pop(message[1], None)
            if entry is not None:
                sink.explained(entry, message[2])
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message[1])
        elif kind == "depth":
            self._depth = message[1]
        elif kind == "drained":
            answer = self._drains.get(message[1])
            if answer is not None and not answer.done():
                answer.set_result(message[2])
        else:
            log.warning("shadow worker sent an unknown message %r", kind)

    def _lost(self, generation: int, problem: Exception | None) -> None:
        if generation != self._generation:
            return
        self._transport = None
        self._depth = 0
        self._gone.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        for answer in self._drains.values():
            if not answer.done():
                answer.set_result(False)
        if self._closed:
            return
        if time.monotonic() - self._started_at > HEALTHY_UPTIME_SECONDS:
            self._backoff = RESTART_MIN_SECONDS
        pid = self._process.pid if self._process is not None else "?"
        self.sink.raised("worker", f"shadow worker (pid {pid}) went away ({problem or 'connection closed'}); "
                                   f"restarting in {self._backoff:g}s, reads are dropped until then")
        self._tasks.spawn(self._restart(self._backoff), "restart")
        self._backoff = min(self._backoff * 2, RESTART_MAX_SECONDS)

    async def _restart(self, delay: float) -> None:
        process = self._process
        if process is not None:
            code = await asyncio.to_thread(_reap, process, 1.0)
            log.warning("shadow worker (pid %d) exited with %s", process.pid, code)
        await asyncio.sleep(delay)
        if self._closed:
            return
        try:
            await self.start()
        except Exception as problem:  # e.g. out of processes: try again, later
            self.sink.raised("worker", problem)
            self._tasks.spawn(self._restart(self._backoff), "restart")
            self._backoff = min(self._backoff * 2, RESTART_MAX_SECONDS)


__all__ = ["Handoff", "FrameReader", "frame", "buffer_limit", "read_message", "WORKER_DOWN"]

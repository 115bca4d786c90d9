"""The contract across the shadow worker boundary, defined once:

- `Sink`, the Protocol of everything the pipeline reports. The proxy process's sink
  (shadow/publish/sink.py) and the worker's relay (shadow/replay/relay.py) both
  implement it, so the pipeline runs unchanged inline or in a worker.
- every message between the proxy process and a worker, each a small immutable typed
  record: `ToWorker` (the proxy sends) and `ToProxy` (a worker sends). Each side
  dispatches them in one `match` statement that the type checker holds exhaustive
  (`assert_never`).
- the frame: a length-prefixed pickle of a list of messages (many per frame).

The records are NamedTuples rather than frozen dataclasses: one is built, pickled and
unpickled per shadowed read, and measured here a frozen slotted dataclass cost about
6 + 8 + 9 µs for that, a NamedTuple 0.4 + 2 + 1.4 µs.
"""
from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from shadow.model import Comparison, DropReason, Failure, FieldDiff, JobInfo, RecentMismatch, SkipReason

if TYPE_CHECKING:
    from shadow.config import Config
    from shadow.rules.spec import Route
    from shadow.shadowside import CapturedRead

Entry = TypeVar("Entry")


class Sink(Protocol[Entry]):
    """What the pipeline reports to. `publish` is told what it needs of the outcome's job
    (its JobInfo, None for an outcome without one) and returns the entry a later
    `explained` refers to (noteworthy outcomes), or None."""

    def publish(self, comparison: Comparison, job: JobInfo | None = None) -> Entry | None: ...

    def skipped(self, entity: str, route: str, reason: SkipReason) -> None: ...

    def dropped(self, reason: DropReason, entity: str | None = None, route: str | None = None) -> None: ...

    def raised(self, failure: Failure, entity: str | None = None) -> None: ...

    def explained(self, entry: Entry, diffs: Iterable[FieldDiff]) -> None: ...

    def observe_stage(self, entity: str, stage: str, seconds: float) -> None: ...

    def noisy(self, entity: str, route: str, paths: Iterable[str]) -> None: ...

    def watch_queue(self, capacity: int, depth: Callable[[], int]) -> None: ...


class Traced(Protocol):
    @property
    def enabled(self) -> bool: ...


class MainSink(Sink[RecentMismatch], Protocol):
    """The main process's sink (shadow/publish/sink.py) as the Handoff sees it: what the
    pipeline reports to, plus a worker's counts merged and whether spans are exported.
    A Protocol, so that the shadow side never imports the publishing layer above it."""

    @property
    def tracing(self) -> Traced: ...

    def merge(self, counts: Counts) -> None: ...


# ----------------------------------------------------------------------------- proxy -> worker


class Start(NamedTuple):
    """The first message: the proxy's configuration; `tracing`: the proxy exports spans,
    so traced reads' outcomes travel one by one (matches included); `shards`: how many
    workers share the keys (and the queue memory)."""

    config: Config
    tracing: bool
    shards: int


class Read(NamedTuple):
    """One captured read: the route by name, everything else plain tuples. The pipeline
    queues and prepares it as it is, in a worker and inline alike (`read_message`)."""

    route: str
    params: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str
    content_encoding: str
    trace: tuple[tuple[str, str], ...]
    enqueued_at: float


class Rules(NamedTuple):
    """The proxy reloaded its rules directory; load the same (version for the log)."""

    version: str | None


class Drain(NamedTuple):
    """Answer `Drained(token)` once idle, with every count reported."""

    token: int
    timeout: float


class Stop(NamedTuple):
    """Finish for up to `drain_seconds`, drop the rest (counted), report, exit."""

    drain_seconds: float


ToWorker = Start | Read | Rules | Drain | Stop


def read_message(read: CapturedRead) -> Read:
    """A captured read as the shadow side takes it: only the request headers its route
    reads (a header key, the reader's token, the recheck's replay headers); cookies and
    other credentials never leave the proxy process, and nothing unused is pickled."""
    match = read.match
    wanted = headers_read(match.route)
    headers = tuple((name, value) for name, value in read.headers.items() if name.lower() in wanted) if wanted else ()
    return Read(match.route.name, tuple(match.params.items()), tuple(read.query.items()), headers,
                read.body, read.content_type, read.content_encoding, read.trace_headers, read.enqueued_at)


def headers_read(route: Route) -> frozenset[str]:
    """The request headers (lower-case) the shadow side of `route` reads (not cached:
    a cache keyed by route would keep replaced rule sets alive; this is about 1 µs)."""
    wanted = set(route.recheck.headers)
    if route.key.kind == "header":
        wanted.add(route.key.name.lower())
    if route.reader is not None:
        wanted.add(route.reader.header.lower())
    return frozenset(wanted)


# ----------------------------------------------------------------------------- worker -> proxy


class Published(NamedTuple):
    """A noteworthy or error outcome (or a traced one), one by one; `handle` names its
    ring entry for a later `Explained`. Documents are stripped but for a missing key's
    control."""

    comparison: Comparison
    job: JobInfo | None
    handle: int | None


class Raised(NamedTuple):
    """One failure in a worker (its `error` left behind: exceptions need not pickle)."""

    failure: Failure
    entity: str | None


class Explained(NamedTuple):
    handle: int
    diffs: tuple[FieldDiff, ...]


class Noisy(NamedTuple):
    """Paths where two back-to-back reads of a recheck's control differed (rare: once
    per rechecked key at most), one message each."""

    entity: str
    route: str
    paths: tuple[str, ...]


class Counts(NamedTuple):
    """Everything counted (not listed) since the last Counts, as deltas: the common
    outcomes cost no message each. Stage timings come as histogram bucket deltas over
    metrics.STAGE_BUCKETS (+Inf last) with their sum."""

    comparisons: tuple[tuple[str, str, str, int], ...] = ()  # entity, route, outcome, n
    suppressed: tuple[tuple[str, str, int], ...] = ()  # entity, field path, n
    skipped: tuple[tuple[str, str, str, int], ...] = ()  # entity, route, reason, n
    dropped: tuple[tuple[str, str | None, str | None, int], ...] = ()  # reason, entity, route, n
    stages: tuple[tuple[str, str, tuple[int, ...], float], ...] = ()  # entity, stage, buckets, sum


class Ready(NamedTuple):
    version: str | None


class Depth(NamedTuple):
    """The worker's queue depth (reads queued or waiting for a recheck)."""

    depth: int


class Drained(NamedTuple):
    token: int
    idle: bool


ToProxy = Published | Raised | Explained | Noisy | Counts | Ready | Depth | Drained
Message = ToWorker | ToProxy


# ----------------------------------------------------------------------------- frames

FRAME_HEADER = struct.Struct("!I")


def frame(messages: list[Any]) -> bytes:
    """One length-prefixed pickle frame holding a batch of messages."""
    payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reassembles frames from a byte stream; `feed()` returns the complete batches."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Any]]:
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
            batches.append(pickle.loads(buffer[start + size:end]))
            start = end
        if start:
            del buffer[:start]
        return batches


__all__ = [
    "Counts",
    "Depth",
    "Drain",
    "Drained",
    "Explained",
    "FrameReader",
    "JobInfo",
    "MainSink",
    "Noisy",
    "Published",
    "Raised",
    "Read",
    "Ready",
    "Rules",
    "Sink",
    "Start",
    "Stop",
    "ToProxy",
    "ToWorker",
    "frame",
    "headers_read",
    "read_message",
]

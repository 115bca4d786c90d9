"""`--record DIR`: a bounded, redacted sample of the API's answers, one JSON file each,
for `shadow rules draft --answers DIR` (docs/operations.md, "Recording answers").

On the request path (both engines) it only decides from the response head whether to
keep a copy (`Recorder.begin`: a GET, 200, a JSON content type, a declared length within
`--record-max-body`, room left for the path's shape and in all), adds chunks to that
bounded copy as they stream (`RecordCopy.add`), and after the client has its last byte
puts it on a bounded queue (`Recorder.offer`; full -> dropped, counted). One background
task drains the queue, parsing, redacting and writing each answer in a thread
(`asyncio.to_thread`), so the event loop never waits for a disk. Nothing here raises
into the request path: every failure is counted in shadow_record_dropped_total{reason}.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from shadow.proxy.forwarding import BoundedCopy
from shadow.proxy.recordfiles import NotRecordable, file_name, path_template, record_text, write_record
from shadow.publish.metrics import Metrics
from shadow.tasks import TaskSet

log = logging.getLogger("shadow.proxy.recording")

#: answers waiting for the writer; more -> dropped{queue_full} (each holds at most --record-max-body)
QUEUE_SIZE = 64
#: what shadow_record_dropped_total counts, all present at 0 from the start
DROP_REASONS = ("too_large", "encoding", "not_json", "queue_full", "write_error", "shutdown")
_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


@dataclass(frozen=True)
class RecordSettings:
    """--record DIR and its bounds."""

    directory: Path
    max_body: int = 262144
    per_route: int = 20
    total: int = 1000
    queue_size: int = QUEUE_SIZE


def is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, parameters ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RecordCopy(BoundedCopy):
    """The copy of one answer's body being recorded, up to a limit; past it the copy is
    given up (counted once)."""

    __slots__ = ("_recorder", "content_encoding", "path", "query", "template")

    def __init__(self, recorder: Recorder, template: str, path: str, query: str, content_encoding: str,
                 limit: int) -> None:
        super().__init__(limit)
        self._recorder = recorder
        self.template = template
        self.path = path
        self.query = query
        self.content_encoding = content_encoding

    def too_large(self) -> None:
        self._recorder.drop("too_large")


@dataclass(frozen=True)
class _Pending:
    template: str
    path: str
    query: str
    content_encoding: str
    body: bytes
    name: str


class Recorder:
    """Decides what is recorded and writes it off the loop. `start()` in a running loop,
    `close()` at shutdown."""

    def __init__(self, settings: RecordSettings, metrics: Metrics) -> None:
        self.settings = settings
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(settings.queue_size)
        #: answers queued or written per path template (only templates recorded: at most `total` keys)
        self._taken: dict[str, int] = {}
        self._count = 0
        self._sequence = 0
        self._run = os.urandom(4).hex()  # names of this run never meet an earlier run's files
        self._tasks = TaskSet("recorder")
        self._closing = False
        self._written = metrics.record_written
        self._dropped = {reason: metrics.record_dropped.labels(reason) for reason in DROP_REASONS}
        self._written.inc(0)

    @property
    def full(self) -> bool:
        """The total cap is reached: nothing more is even looked at."""
        return self._count >= self.settings.total

    def start(self) -> None:
        self._tasks.spawn(self._drain(), "write")

    def drop(self, reason: str) -> None:
        self._dropped[reason].inc()

    # ------------------------------------------------------------------ the request path

    def begin(self, method: str, target: str, status: int, content_type: str, content_encoding: str,
              content_length: int | None) -> RecordCopy | None:
        """From the response head: a copy to fill as the body streams, or None. Cheap
        checks first; a path shape already recorded `per_route` times costs one dict
        look-up after its template."""
        if method != "GET" or status != 200 or self._closing or self._count >= self.settings.total \
                or not is_json(content_type):
            return None
        path, _, query = target.partition("?")
        template = path_template(path)
        if self._taken.get(template, 0) >= self.settings.per_route:
            return None
        if content_encoding.strip().lower() not in _ENCODINGS:
            self.drop("encoding")
            return None
        if content_length is not None and content_length > self.settings.max_body:
            self.drop("too_large")
            return None
        return RecordCopy(self, template, path, query, content_encoding, self.settings.max_body)

    def offer(self, copy: RecordCopy) -> None:
        """After the client has the whole answer: queue it for the writer (never waits)."""
        body = copy.body()
        if body is None:
            return  # counted when it grew too large
        taken = self._taken.get(copy.template, 0)
        if self._closing or taken >= self.settings.per_route or self._count >= self.settings.total:
            return  # another answer of the same shape got there first
        self._sequence += 1
        pending = _Pending(copy.template, copy.path, copy.query, copy.content_encoding, body,
                           file_name(copy.template, self._run, self._sequence))
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.drop("queue_full")
            return
        self._taken[copy.template] = taken + 1
        self._count += 1

    # ------------------------------------------------------------------ the writer

    async def _drain(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                written = await asyncio.to_thread(self._write, pending)
            finally:
                self._queue.task_done()
            if written is None:
                self._written.inc()
                continue
            self.drop(written)
            if written in ("not_json", "too_large", "encoding"):  # its place goes to another answer
                self._taken[pending.template] -= 1
                self._count -= 1

    def _write(self, pending: _Pending) -> str | None:
        """In a thread: None when written, else the reason it was not."""
        try:
            text = record_text("GET", pending.path, pending.query, 200, pending.body, pending.content_encoding,
                               self.settings.max_body)
        except NotRecordable as problem:
            return problem.reason
        except Exception as problem:  # a body the redaction could not walk: this answer only, the writer goes on
            log.warning("recording an answer failed: %s: %s", type(problem).__name__, problem)
            return "not_json"
        try:
            write_record(self.settings.directory, pending.name, text)
        except Exception as problem:  # a full disk, a removed directory: counted, never raised
            log.warning("recording an answer failed: %s: %s", type(problem).__name__, problem)
            return "write_error"
        return None

    async def wait_idle(self) -> None:
        """Until every queued answer is written or dropped."""
        await self._queue.join()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop recording; answers still queued get `timeout` to be written, then are
        counted as dropped{shutdown}."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        await self._tasks.close()
        while not self._queue.empty():
            self._queue.get_nowait()
            self.drop("shutdown")


"""The shadow worker's Sink: what the pipeline reports, relayed to the proxy process's
one Sink with as few messages as the outcome allows.

- Common outcomes (match, and anything not noteworthy, not an error and not traced),
  skips, drops and stage timings are only counted here and leave as one `Counts` delta
  per report interval: a comparison costs no message of its own.
- Noteworthy outcomes (mismatch, missing, extra, transient), errors and, when the proxy
  exports spans, outcomes of traced reads, travel one by one (`Published`), so the ring,
  the mismatch log, recent errors and spans are built on the proxy's side.
- Failures (`Raised`) and deepdiff explanations (`Explained`) travel one by one.
"""
from __future__ import annotations

import bisect
import collections
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from shadow.model import (
    NOTEWORTHY,
    STAGE_BUCKETS,
    Comparison,
    DropReason,
    Failure,
    FieldDiff,
    Outcome,
    SkipReason,
)
from shadow.replay.messages import (
    Counts,
    Explained,
    JobInfo,
    Noisy,
    Published,
    Raised,
    ToProxy,
)
from shadow.replay.sampling import TokenBucket

log = logging.getLogger("shadow.replay.relay")

_BOUNDS = (*STAGE_BUCKETS, float("inf"))
#: outcomes that always travel one by one
ONE_BY_ONE = NOTEWORTHY | {Outcome.ERROR, Outcome.SKIPPED}
#: with an evidence store, noteworthy outcomes per second that cross with both whole
#: documents (the store keeps a few examples per path; the rest travel slim), for
#: transients and for the rest each, so a storm of transients never starves the mismatches
DOCUMENTS_PER_SECOND = 5.0


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """Stands for the proxy process's ring entry of a mismatch, for a later `explained`."""

    id: int
    entity: str


class _Stage:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(_BOUNDS)
        self.total = 0.0


class Relay:
    """Implements messages.Sink[RemoteEntry] in a worker; `send` queues one message to
    the proxy process, `counts()` takes the deltas counted since the last call."""

    def __init__(self, send: Callable[[ToProxy], None], tracing: bool = False) -> None:
        self._send = send
        self.tracing = tracing
        self.every_outcome = False  # Config.report_every_outcome
        #: set when the proxy keeps evidence: the budgets of outcomes sent with documents
        #: (persistent and unstable outcomes; transients)
        self.documents: tuple[TokenBucket, TokenBucket] | None = None
        self._handles = itertools.count(1)
        self.depth: Callable[[], int] = lambda: 0
        self._comparisons: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._suppressed: collections.Counter[tuple[str, str]] = collections.Counter()
        self._skipped: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._dropped: collections.Counter[tuple[str, str | None, str | None]] = collections.Counter()
        self._stages: dict[tuple[str, str], _Stage] = {}

    # ------------------------------------------------------------------ the Sink

    def publish(self, comparison: Comparison, job: JobInfo | None = None) -> RemoteEntry | None:
        outcome = comparison.outcome
        traced = self.tracing and job is not None and bool(job.trace)
        # a Comparison field Counts does not carry yet (e.g. unverified paths) travels whole
        if (outcome not in ONE_BY_ONE and not traced and not self.every_outcome
                and not getattr(comparison, "unverified", ())):
            self._comparisons[comparison.entity, comparison.route, outcome.value] += 1
            for path in {diff.path for diff in comparison.suppressed}:
                self._suppressed[comparison.entity, path] += 1
            return None
        whole = (self.documents is not None and outcome in NOTEWORTHY
                 and self.documents[outcome is Outcome.TRANSIENT].take())
        slim = comparison if whole else replace(
            comparison, candidate=None, control=comparison.control if outcome is Outcome.MISSING else None)
        # the request's parameters only serve an evidence example, which needs the documents
        info = job if whole or job is None or not (job.params or job.query) else job._replace(params=(), query=())
        handle = next(self._handles) if outcome in NOTEWORTHY else None
        self._send(Published(slim, info, handle))
        return RemoteEntry(handle, comparison.entity) if handle is not None else None

    def skipped(self, entity: str, route: str, reason: SkipReason) -> None:
        self._skipped[entity, route, reason.value if isinstance(reason, SkipReason) else str(reason)] += 1

    def dropped(self, reason: DropReason, entity: str | None = None, route: str | None = None) -> None:
        self._dropped[DropReason(reason).value, entity, route] += 1

    def raised(self, failure: Failure, entity: str | None = None) -> None:
        if failure.error is not None:  # exceptions need not pickle (asyncpg's do not)
            log.debug("shadow %s failed", failure.stage.value, exc_info=failure.error)
            failure = replace(failure, error=None)
        self._send(Raised(failure, entity))

    def explained(self, entry: RemoteEntry, diffs: Iterable[FieldDiff]) -> None:
        self._send(Explained(entry.id, tuple(diffs)))

    def observe_stage(self, entity: str, stage: str, seconds: float) -> None:
        timing = self._stages.get((entity, stage))
        if timing is None:
            timing = self._stages[entity, stage] = _Stage()
        timing.buckets[bisect.bisect_left(_BOUNDS, seconds)] += 1
        timing.total += seconds

    def noisy(self, entity: str, route: str, paths: Iterable[str]) -> None:
        self._send(Noisy(entity, route, tuple(paths)))

    def watch_queue(self, capacity: int, depth: Callable[[], int]) -> None:
        self.depth = depth  # reported by the worker every report interval

    # ------------------------------------------------------------------ deltas

    def counts(self) -> Counts | None:
        """Everything counted since the last call (None: nothing)."""
        if not (self._comparisons or self._suppressed or self._skipped or self._dropped or self._stages):
            return None
        delta = Counts(
            comparisons=tuple((*key, n) for key, n in self._comparisons.items()),
            suppressed=tuple((*key, n) for key, n in self._suppressed.items()),
            skipped=tuple((*key, n) for key, n in self._skipped.items()),
            dropped=tuple((*key, n) for key, n in self._dropped.items()),
            stages=tuple((entity, stage, tuple(t.buckets), t.total) for (entity, stage), t in self._stages.items()),
        )
        self._comparisons.clear()
        self._suppressed.clear()
        self._skipped.clear()
        self._dropped.clear()
        self._stages.clear()
        return delta


__all__ = ["ONE_BY_ONE", "Relay", "RemoteEntry"]

"""Rechecks: keys that differed (mismatch or missing) wait in one bounded heap for the
next step of their route's schedule (`recheck.after`), then both sides are read again:
the control (replayed to the upstream, or from MongoDB, or the original answer with
`control: none`) first, then the candidate — the candidate lags the control, so it gets
at least as long to catch up. convergence.Trail turns the steps into transient,
mismatch / missing or unstable.

One heap served by one task instead of a sleeping task per key, so a mismatch storm
costs a heap entry per key; it is bounded by count and by bytes, and what does not fit
is counted (`shadow_dropped_total{reason="recheck_full"|"recheck_bytes"}`) and
published with what the first read saw.

On the first recheck that re-reads the control, it is read twice, back to back: the
paths that differ between two reads milliseconds apart are generated per request (a
timestamp of "now", a nonce, a random order) and are reported as noisy
(`Sink.noisy`, never ignored automatically).

Over 350 lines: the heap, the parked-key trail and the Rechecker are one mechanism (a
key's whole recheck life); convergence.py holds the pure verdict.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson

from shadow.model import DropReason, Failure, FieldDiff, ListContext, Outcome, ShadowJob, Stage, Verdict
from shadow.replay.control import (
    ControlGone,
    Replay,
    UpstreamControl,
    read_upstream_once,
)
from shadow.replay.convergence import WHOLE_DOCUMENT, Trail, moved_paths
from shadow.replay.listcheck import run_list_check
from shadow.replay.messages import Sink
from shadow.replay.viewread import Listing, list_path, listing
from shadow.rules.spec import Entity, Route

if TYPE_CHECKING:
    from shadow.replay.sources import Source
    from shadow.replay.viewread import BoundReader
    from shadow.rules.load import RuleSet

Item = TypeVar("Item")


class RecheckHeap(Generic[Item]):
    """Items due at a monotonic time; `push` never waits, `due_batch` waits for the next."""

    def __init__(self, capacity: int, capacity_bytes: int = 256 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.held_bytes = 0
        self._heap: list[tuple[float, int, Item, int]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: Item, delay: float, size: int = 0) -> DropReason | None:
        """Schedule `item` in `delay` seconds; the reason when it does not fit."""
        if len(self._heap) >= self.capacity:
            return DropReason.RECHECK_FULL
        if self.held_bytes + size > self.capacity_bytes:
            return DropReason.RECHECK_BYTES
        due = time.monotonic() + max(delay, 0.0)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due, next(self._seq), item, size))
        self.held_bytes += size
        if earliest is None or due < earliest:
            self._wakeup.set()  # the server sleeps until the old earliest: wake it
        return None

    async def due_batch(self, limit: int) -> list[tuple[Item, float]]:
        """Wait until at least one item is due; up to `limit` due items with how long
        each was late (seconds past its due time)."""
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
        now = time.monotonic()
        due: list[tuple[Item, float]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            when, _, item, size = heapq.heappop(self._heap)
            self.held_bytes -= size
            due.append((item, now - when))
        return due

    def clear(self) -> list[Item]:
        """Remove and return everything still waiting (shutdown)."""
        items = [entry[2] for entry in self._heap]
        self._heap.clear()
        self.held_bytes = 0
        return items


@dataclass(frozen=True, slots=True)
class PendingKey:
    """One key of a job on its way to the source (first read, or a recheck step)."""

    job: ShadowJob
    key: str
    trail: Trail | None = None  # None on the first read
    replay: Replay | None = None  # how to read the control again (upstream control only)
    list_read: bool = False  # the list itself (members, order, total), keyed `[list ...]`
    context: ListContext | None = None  # a list read: its query and what selected its rows


@dataclass(frozen=True, slots=True)
class ControlRead:
    """The control as a recheck found it."""

    document: Any
    gone: bool = False  # the upstream says it is not there any more
    second: Any = None  # a second read right after the first (noise check), or None
    fresh: bool = False  # False: the original / last answer, not re-read


class RecheckHost(Protocol):
    """What the rechecker needs from the pipeline."""

    sink: Sink[Any]
    sources: dict[str, Source]

    def rules(self) -> RuleSet: ...

    async def fetch(self, entity: str, source_name: str, keys: list[str],
                    reader: BoundReader | None = None) -> tuple[Entity, dict[str, Any]] | Failure: ...

    def finish(self, item: PendingKey, outcome: Outcome, diffs: tuple[FieldDiff, ...], verdict: Verdict,
               control: Any, candidate: Any, entity_spec: Entity) -> None: ...

    def fail(self, item: PendingKey, failure: Failure, report: bool = True) -> None: ...


class Rechecker:
    """Parks differing keys and runs their schedule (`serve()` is one task)."""

    def __init__(self, host: RecheckHost, compare: Callable[..., Verdict], capacity: int, capacity_bytes: int,
                 batch_size: int, timeout: float, upstream: UpstreamControl | None = None) -> None:
        self.host = host
        self._compare = compare
        self.heap: RecheckHeap[PendingKey] = RecheckHeap(capacity, capacity_bytes)
        self.batch_size = batch_size
        self.timeout = timeout
        self.upstream = upstream
        self.busy = 0

    def __len__(self) -> int:
        return len(self.heap)

    def park(self, item: PendingKey, verdict: Verdict, candidate: Any, schedule: tuple[float, ...]) -> bool:
        """Start the schedule of a key whose first read differed; False (counted) when
        there is no room: the caller publishes what the first read saw."""
        if item.list_read:  # the list's control is the listing; its documents need not wait
            trail = Trail(first=verdict, first_candidate=None, control=item.job.listing, started=time.monotonic())
            parked = replace(item, job=replace(item.job, controls={}, attempt=1), trail=trail)
            return self._push(parked, schedule[0], _size(item.job.listing.keys, verdict.diffs))
        control = item.job.controls[item.key]
        trail = Trail(first=verdict, first_candidate=candidate, control=control, started=time.monotonic())
        # keep only this key's control: a list read's other documents need not wait
        parked = replace(item, job=replace(item.job, controls={item.key: control}, attempt=1), trail=trail)
        return self._push(parked, schedule[0], _size(control, candidate))

    def _push(self, item: PendingKey, delay: float, size: int) -> bool:
        reason = self.heap.push(item, delay, size)
        if reason is not None:
            self.host.sink.dropped(reason)
        return reason is None

    def clear(self) -> list[PendingKey]:
        return self.heap.clear()

    async def serve(self) -> None:
        while True:
            due = await self.heap.due_batch(self.batch_size)
            for item, _late in due:
                info = item.job.info
                self.host.sink.observe_stage(info.entity, "recheck_wait", time.monotonic() - info.enqueued_at)
            self.busy += 1
            try:
                await self.recheck([item for item, _ in due])
            except Exception as problem:  # a bug here must not stop the rechecks
                self.host.sink.raised(Failure.of(Stage.RECHECK, problem))
            finally:
                self.busy -= 1

    async def close(self) -> None:
        if self.upstream is not None:
            await self.upstream.close()

    # ------------------------------------------------------------------ one batch

    async def recheck(self, items: list[PendingKey]) -> None:
        for item in items:
            if item.list_read:
                try:
                    await self._recheck_list(item)
                except Exception as problem:
                    self.host.fail(item, Failure.of(Stage.RECHECK, problem))
        groups: dict[tuple[str, str, Any], list[PendingKey]] = {}
        for item in (item for item in items if not item.list_read):  # one fetch per reader too
            groups.setdefault((item.job.info.entity, item.job.info.source, item.job.reader), []).append(item)
        today = dt.datetime.now(dt.UTC).date()
        for (entity, source_name, reader), group in groups.items():
            entity_spec = self.host.rules().entities.get(entity)
            if entity_spec is None:
                for item in group:
                    self.host.fail(item, Failure(Stage.RECHECK, "LookupError",
                                                 f"entity {entity!r} is not in the loaded rules"), report=False)
                continue
            started = time.monotonic()
            controls = await self._read_controls(entity_spec, group)
            self.host.sink.observe_stage(entity, "recheck_control", time.monotonic() - started)
            keys = list(dict.fromkeys(item.key for item in group))
            fetched = await self.host.fetch(entity, source_name, keys, reader)
            if isinstance(fetched, Failure):  # reported once by fetch(); each key is an error outcome
                for item in group:
                    self.host.fail(item, fetched, report=False)
                continue
            entity_spec, found = fetched
            for item, control in zip(group, controls, strict=True):
                try:
                    self._step(item, entity_spec, control, found.get(item.key), today)
                except Exception as problem:
                    self.host.fail(item, Failure.of(Stage.COMPARE, problem))

    def _step(self, item: PendingKey, entity_spec: Entity, read: ControlRead, candidate: Any, today: dt.date) -> None:
        trail = item.trail
        assert trail is not None
        route = self.host.rules().route_named(item.job.info.route)
        if read.gone:
            if candidate is None:  # deleted on both sides: converged
                self._converged(item, trail, entity_spec)
                return
            verdict = Verdict(Outcome.MISMATCH, (FieldDiff("", "", None, "(still present)", "control_gone"),))
            control, moved = None, {WHOLE_DOCUMENT}
        else:
            control = read.document
            verdict = (Verdict(Outcome.MISSING) if candidate is None
                       else self._compare(entity_spec, control, candidate, today))
            if verdict.outcome is Outcome.MATCH:
                self._converged(item, trail, entity_spec)
                return
            moved = set(self._moved(entity_spec, trail.control, control, today)) if read.fresh else set()
            if read.second is not None:
                noise = self._compare(entity_spec, control, read.second, today)
                paths = sorted({diff.path for diff in (*noise.diffs, *noise.suppressed)})
                if paths:
                    self.host.sink.noisy(item.job.info.entity, item.job.info.route, paths)
                moved |= moved_paths(noise)
        trail = trail.after(verdict, candidate, control, moved, time.time(), time.monotonic())
        if read.second is not None or read.fresh:
            trail = replace(trail, noise_checked=True)
        self._next(item, trail, route, entity_spec, _size(control, candidate))

    def _next(self, item: PendingKey, trail: Trail, route: Route | None, entity_spec: Entity, size: int) -> None:
        """Wait for the next step of the schedule, or publish the outcome of the trail."""
        schedule = route.recheck.after if route is not None else ()
        if trail.step < len(schedule):
            delay = trail.started + schedule[trail.step] - time.monotonic()
            job = replace(item.job, attempt=trail.step + 1)
            if self._push(replace(item, job=job, trail=trail), delay, size):
                return
        outcome, diffs = trail.outcome()
        last = trail.last if trail.last is not None else trail.first
        control = trail.control if trail.control is not None or item.list_read else item.job.controls[item.key]
        self.host.finish(replace(item, trail=trail), outcome, diffs, last, control, trail.last_candidate, entity_spec)

    async def _recheck_list(self, item: PendingKey) -> None:
        """One step of a list read's recheck: the list read again from the upstream (or
        the original answer), PostgreSQL's selection again, the list-level differences
        compared with the first read's (listcheck.py)."""
        trail = _trail(item)
        rules = self.host.rules()
        route = rules.route_named(item.job.info.route)
        entity_spec = rules.entities.get(item.job.info.entity)
        source = self.host.sources.get(item.job.info.source)
        if route is None or entity_spec is None or source is None:
            self.host.fail(item, Failure(Stage.RECHECK, "LookupError",
                                         f"route {item.job.info.route!r} is not in the loaded rules"), report=False)
            return
        before: Listing = trail.control
        after, fresh, gone = before, False, False
        if route.recheck.control == "upstream" and item.replay is not None and self.upstream is not None:
            try:
                body = await self.upstream.read_body(route, item.replay)
                found = listing(route, body, before.query)
                if found is None:
                    raise RuntimeError("upstream answer has no list where the route says")
                after, fresh = found, True
            except ControlGone:
                gone = True
            except Exception as problem:  # the upstream is down or odd: keep the last list
                self.host.sink.raised(Failure.of(Stage.RECHECK_CONTROL, problem), item.job.info.entity)
        job = replace(item.job, listing=after)
        checked = await asyncio.wait_for(run_list_check(source, entity_spec, route, job), self.timeout)
        if checked.unmodeled:  # the rules changed under the read (a reload): no verdict to give
            why = f"the route no longer models this read ({', '.join(checked.unmodeled)})"
            self.host.fail(item, Failure(Stage.RECHECK, "LookupError", why), report=False)
            return
        findings = checked.findings(route)
        if gone:  # the API no longer answers the list (or the reader): converged if PostgreSQL selects nothing
            if not checked.extra and set(after.keys) <= checked.unselected:
                self._converged(item, trail, entity_spec)
                return
            verdict = Verdict(Outcome.MISMATCH, (FieldDiff("", "", None, "(still selected)", "control_gone"),))
            moved = {WHOLE_DOCUMENT}
        elif not findings:
            self._converged(item, trail, entity_spec)
            return
        else:
            verdict = Verdict(Outcome.MISMATCH, findings)
            moved = _moved_in_list(route, before, after) if fresh else set()
        trail = trail.after(verdict, None, after, moved, time.time(), time.monotonic())
        self._next(replace(item, context=checked.context or item.context), trail, route, entity_spec,
                   _size(after.keys, verdict.diffs))

    def _converged(self, item: PendingKey, trail: Trail, entity_spec: Entity) -> None:
        """Both sides agreed on this recheck: transient, published with what the first read saw."""
        ended = replace(item, trail=trail.converged(time.time(), time.monotonic()))
        if item.list_read:
            self.host.finish(ended, Outcome.TRANSIENT, trail.first.diffs, trail.first, None, None, entity_spec)
            return
        self.host.finish(ended, Outcome.TRANSIENT, trail.first.diffs, trail.first, item.job.controls[item.key],
                         trail.first_candidate, entity_spec)

    def _moved(self, entity_spec: Entity, before: Any, after: Any, today: dt.date) -> frozenset[str]:
        if before is None or after is None:
            return frozenset() if before is after else frozenset({WHOLE_DOCUMENT})
        return moved_paths(self._compare(entity_spec, before, after, today))

    # ------------------------------------------------------------------ the control

    async def _read_controls(self, entity_spec: Entity, items: list[PendingKey]) -> list[ControlRead]:
        rules = self.host.rules()
        modes: list[str] = []
        for item in items:
            route = rules.route_named(item.job.info.route)
            modes.append(route.recheck.control if route is not None else "none")
        reads: list[ControlRead | None] = [None] * len(items)
        mongo_keys = [item.key for item, mode in zip(items, modes, strict=True) if mode == "mongo"]
        if mongo_keys:
            first, second = await self._read_mongo(entity_spec, mongo_keys, items, modes)
            for index, (item, mode) in enumerate(zip(items, modes, strict=True)):
                if mode == "mongo" and first is not None:
                    document = first.get(item.key)
                    again = None if second is None or _trail(item).noise_checked else second.get(item.key)
                    reads[index] = ControlRead(document, gone=document is None, fresh=True, second=again)
        upstream_at = [index for index, mode in enumerate(modes) if mode == "upstream"
                       and items[index].replay is not None and self.upstream is not None]
        if upstream_at:
            firsts: dict[tuple[Any, ...], Any] = {}
            seconds: dict[tuple[Any, ...], Any] = {}
            answers = await asyncio.gather(*(self._read_upstream(items[index], firsts, seconds)
                                             for index in upstream_at))
            for index, answer in zip(upstream_at, answers, strict=True):
                reads[index] = answer
        return [read if read is not None else ControlRead(_trail(item).control)
                for item, read in zip(items, reads, strict=True)]

    async def _read_mongo(self, entity_spec: Entity, keys: list[str], items: list[PendingKey],
                          modes: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        source = self.host.sources.get("mongo")
        if source is None:
            self.host.sink.raised(Failure(Stage.RECHECK_CONTROL, "LookupError",
                                          "recheck control 'mongo' but no --mongo source configured"), entity_spec.name)
            return None, None
        keys = list(dict.fromkeys(keys))
        try:
            first = await asyncio.wait_for(source.fetch(entity_spec, keys), self.timeout)
            noise_keys = [item.key for item, mode in zip(items, modes, strict=True)
                          if mode == "mongo" and not _trail(item).noise_checked]
            second = await asyncio.wait_for(source.fetch(entity_spec, noise_keys), self.timeout) if noise_keys else None
        except Exception as problem:
            self.host.sink.raised(Failure.of(Stage.RECHECK_CONTROL, problem), entity_spec.name)
            return None, None
        return first, second

    async def _read_upstream(self, item: PendingKey, firsts: dict[tuple[Any, ...], Any],
                             seconds: dict[tuple[Any, ...], Any]) -> ControlRead | None:
        """The control from a replay (and a second one right after, once per key); the
        keys of one list read in this batch share its replays."""
        assert self.upstream is not None and item.replay is not None and item.trail is not None
        route = self.host.rules().route_named(item.job.info.route)
        if route is None:
            return None
        try:
            first = await read_upstream_once(self.upstream, route, item.job.params, item.replay, firsts)
            second = None
            if not _trail(item).noise_checked and item.key in first:
                again = await read_upstream_once(self.upstream, route, item.job.params, item.replay, seconds)
                second = again.get(item.key)
        except ControlGone:
            return ControlRead(None, gone=True, fresh=True)
        except Exception as problem:  # the upstream is down, slow, or answers oddly: keep the last control
            self.host.sink.raised(Failure.of(Stage.RECHECK_CONTROL, problem), item.job.info.entity)
            return None
        if item.key not in first:  # a list read that no longer shows this key (paging moved)
            return ControlRead(None, gone=True, fresh=True)
        return ControlRead(first[item.key], second=second, fresh=True)


def _moved_in_list(route: Route, before: Listing, after: Listing) -> set[str]:
    """Where the API's own list changed between two reads (members, total, page count)."""
    moved = set()
    if before.keys != after.keys:
        moved.add(list_path(route)[:-3])
    page = route.page
    if page is not None and page.total and before.total != after.total:
        moved.add(".".join(page.total))
    if page is not None and page.pages and before.pages != after.pages:
        moved.add(".".join(page.pages))
    return moved


def _trail(item: PendingKey) -> Trail:
    assert item.trail is not None, "a parked key always has its trail"
    return item.trail


def _size(control: Any, candidate: Any) -> int:
    """Roughly what a parked key holds in memory (its two documents, as JSON)."""
    try:
        return len(orjson.dumps([control, candidate], default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return 4096


__all__ = ["ControlRead", "PendingKey", "RecheckHeap", "Rechecker"]

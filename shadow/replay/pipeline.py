"""The shadow pipeline: everything that happens to a matched read after the client has
its answer. Runs in N worker tasks on the event loop of the shadow worker process
(shadow/replay/worker.py; or of the proxy's own process with --shadow-process inline), never
on the request path. Everything it reports goes through the sink it is given: the
real Sink inline, a Relay (shadow/replay/relay.py) to the main process's Sink in a worker:
both implement the messages.Sink Protocol.

    proxy ──offer()──▶ messages.Read ──take()──▶ bounded queue ──▶ worker: prepare (parse, keys, sampling)
        ──▶ one Source.fetch per (entity, source) for the whole batch (with a timeout)
        ──▶ compare ──▶ match | mismatch/missing ──▶ recheck heap (route's schedule)
        ──▶ re-read control and candidate, step by step (shadow/replay/recheck.py)
        ──▶ transient | mismatch | missing | unstable ──▶ Sink.publish

A read is queued as the wire message a shadow worker receives (messages.Read): the
worker hands it over as it came (`take`), the inline pipeline makes one (`offer`).
`offer()` never waits: a full queue is a counted drop. deepdiff explanations of
persistent mismatches run in a thread, at most `explain_rate` per second; beyond that
they are dropped and counted, while every outcome is still counted exactly.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shadow.model import (
    Comparison,
    DropReason,
    Failure,
    FieldDiff,
    Outcome,
    RecentMismatch,
    ShadowJob,
    SkipReason,
    Stage,
    Verdict,
)
from shadow.replay.control import Replay, UpstreamControl
from shadow.replay.listcheck import list_key, run_list_check, unverified_paths
from shadow.replay.messages import JobInfo, Read, Sink, read_message
from shadow.replay.prepare import prepare
from shadow.replay.recheck import PendingKey, Rechecker
from shadow.replay.sampling import TokenBucket, sampled_by_chance
from shadow.rules.spec import Entity, Route, RouteMatch
from shadow.shadowside import CapturedRead
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from shadow.replay.sources import Source
    from shadow.replay.viewread import BoundReader
    from shadow.rules.load import RuleSet

MAX_EXPLAINS_IN_FLIGHT = 16  # default of --explain-concurrency

__all__ = ["CapturedRead", "Pipeline", "PipelineSettings"]


@dataclass(frozen=True)
class PipelineSettings:
    queue_size: int = 10000
    workers: int = 4
    batch_size: int = 50
    source_timeout: float = 2.0
    rate_limit: float = 0.0  # reads per second, 0 = unlimited
    explain_rate: float = 20.0  # deepdiff explanations per second
    explain_concurrency: int = MAX_EXPLAINS_IN_FLIGHT  # explanations in flight; beyond -> dropped
    recheck_capacity: int = 10000
    recheck_bytes: int = 256 * 1024 * 1024  # documents held by keys waiting for a recheck
    queue_bytes: int = 64 * 1024 * 1024  # body copies waiting in the queue; beyond -> queue_full


def admit(match: RouteMatch, limit: TokenBucket, sink: Sink[Any]) -> bool:
    """Random sampling and the rate limit of one matched read (request path); counts
    the skip or drop when the answer is no."""
    route = match.route
    if route.sample_by != "key" and not sampled_by_chance(route.sample):
        sink.skipped(route.entity, route.name, SkipReason.NOT_SAMPLED)
        return False
    if not limit.take():
        sink.dropped(DropReason.RATE_LIMITED, route.entity, route.name)
        return False
    return True


class Pipeline:
    """Bounded queue + batching workers + recheck heap. `start()` in a running loop;
    `close()` drops what is still queued (counted as `shutdown`)."""

    def __init__(self, settings: PipelineSettings, sink: Sink[Any], rules: Callable[[], RuleSet | None],
                 sources: Mapping[str, Source], compare: Callable[..., Verdict],
                 explain: Callable[..., list[FieldDiff]] | None = None,
                 upstream: UpstreamControl | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self._rules = rules
        self.sources = dict(sources)
        self._compare = compare
        self._explain = explain
        self.queue: asyncio.Queue[tuple[Route, Read]] = asyncio.Queue(settings.queue_size)
        self._queued_bytes = 0  # memory is bounded by bytes too, not only by count
        self._limit = TokenBucket(settings.rate_limit)
        self._explain_budget = TokenBucket(settings.explain_rate, burst=max(settings.explain_rate, 1.0))
        self._explaining = 0
        self._rechecks = Rechecker(self, compare, settings.recheck_capacity, settings.recheck_bytes,
                                   settings.batch_size, settings.source_timeout, upstream)
        self._tasks = TaskSet("pipeline")
        self._closed = False
        self._busy = 0  # batches being processed (drain() waits for them)
        sink.watch_queue(settings.queue_size, self.queue.qsize)

    # ------------------------------------------------------------------ request path

    def admit(self, match: RouteMatch) -> bool:
        """On the request path, when a matched read's 2xx headers arrive: copy its body?
        Random sampling and the rate limit are decided here, so reads we will not
        compare cost nothing more. Counts the skip when the answer is no."""
        return admit(match, self._limit, self.sink)

    def offer(self, read: CapturedRead) -> bool:
        """Queue a captured read without waiting (inline: as the message a worker would
        receive); a full queue (or a closed pipeline) drops it."""
        return self.take(read.match.route, read_message(read))

    def take(self, route: Route, read: Read) -> bool:
        """Queue a read of `route` as it came over the wire, without waiting; a full
        queue (or a closed pipeline) drops it."""
        if self._closed:
            self.sink.dropped(DropReason.SHUTDOWN, route.entity, route.name)
            return False
        if self._queued_bytes + len(read.body) > self.settings.queue_bytes or self.queue.full():
            self.sink.dropped(DropReason.QUEUE_FULL, route.entity, route.name)
            return False
        self.queue.put_nowait((route, read))
        self._queued_bytes += len(read.body)
        return True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for number in range(self.settings.workers):
            self._tasks.spawn(self._work(), f"worker-{number}")
        self._tasks.spawn(self._rechecks.serve(), "rechecks")

    async def close(self) -> None:
        self._closed = True
        await self._tasks.close()
        while not self.queue.empty():
            route, _ = self.queue.get_nowait()
            self.sink.dropped(DropReason.SHUTDOWN, route.entity, route.name)
        for pending in self._rechecks.clear():
            self.sink.dropped(DropReason.SHUTDOWN, pending.job.info.entity, pending.job.info.route)
        self._queued_bytes = 0
        await self._rechecks.close()

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued, processed, waiting for a recheck or being
        explained (tests, benchmarks, the demo's summary). False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and not self._rechecks and self._busy == 0 and self._rechecks.busy == 0 \
                    and self._explaining == 0:
                return True
            await asyncio.sleep(0.01)
        return False

    # ------------------------------------------------------------------ workers

    async def _work(self) -> None:
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.settings.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            self._queued_bytes -= sum(len(read.body) for _, read in batch)
            self._busy += 1
            try:
                await self._process(batch)
            except Exception as problem:  # a bug here must not stop the worker
                self.sink.raised(Failure.of(Stage.WORKER, problem))
            finally:
                self._busy -= 1

    async def _process(self, batch: list[tuple[Route, Read]]) -> None:
        now = time.monotonic()
        pending: list[PendingKey] = []
        upstream = self._rechecks.upstream is not None
        for route, read in batch:
            try:
                prepared = prepare(route, read, upstream)
            except Exception as problem:  # a rule that cannot handle this body
                failure = Failure.of(Stage.PREPARE, problem)
                self.sink.raised(failure, route.entity)
                self._publish_error(JobInfo(route.entity, route.name, route.source, read.enqueued_at, read.trace),
                                    None, failure)
                continue
            for reason in prepared.skips:
                self.sink.skipped(route.entity, route.name, reason)
            job = prepared.job
            if job is None:
                continue
            self._stage(job.info.entity, "queue", now - read.enqueued_at)
            replay = prepared.replay
            unselected = await self._check_extras(job, route, replay) if job.listing is not None else frozenset()
            pending.extend(PendingKey(job, key, replay=replay) for key in job.controls if key not in unselected)
        if pending:
            await self._fetch_and_compare(pending)

    def rules(self) -> RuleSet:
        rules = self._rules()
        # reads reach the pipeline only once rules are in force (the sidecar starts with
        # them; a worker without them refuses every read before it gets here)
        assert rules is not None
        return rules

    async def fetch(self, entity: str, source_name: str, keys: list[str],
                    reader: BoundReader | None = None) -> tuple[Entity, dict[str, Any]] | Failure:
        """One batched source call: (the entity's rules, documents by key), or the failure
        (reported here, once; a missing source or entity is a setting, counted per key)."""
        source = self.sources.get(source_name)
        if source is None:
            return Failure(Stage.FETCH, "LookupError", f"no {source_name} source configured")
        entity_spec = self.rules().entities.get(entity)
        if entity_spec is None:  # removed by a reload since the read was queued
            return Failure(Stage.FETCH, "LookupError", f"entity {entity!r} is not in the loaded rules")
        started = time.monotonic()
        try:
            fetch = source.fetch(entity_spec, keys) if reader is None else source.fetch(entity_spec, keys, reader)
            found = await asyncio.wait_for(fetch, self.settings.source_timeout)
        except TimeoutError:
            failure = Failure(Stage.FETCH, "TimeoutError",
                              f"after {self.settings.source_timeout:g}s ({len(keys)} keys)")
            self.sink.raised(failure, entity)
            return failure
        except Exception as problem:
            failure = Failure.of(Stage.FETCH, problem)
            self.sink.raised(failure, entity)
            return failure
        finally:
            self._stage(entity, "fetch", time.monotonic() - started)
        return entity_spec, found

    async def _fetch_and_compare(self, pending: list[PendingKey]) -> None:
        groups: dict[tuple[str, str, Any], list[PendingKey]] = {}
        for item in pending:  # one fetch per reader too: fields bound to the reader differ
            groups.setdefault((item.job.info.entity, item.job.info.source, item.job.reader), []).append(item)
        today = dt.datetime.now(dt.UTC).date()
        for (entity, source_name, reader), items in groups.items():
            fetched = await self.fetch(entity, source_name, list(dict.fromkeys(item.key for item in items)), reader)
            if isinstance(fetched, Failure):  # reported once by fetch(); each key is an error outcome
                for item in items:
                    self._publish_error(item.job.info, item.key, fetched)
                continue
            entity_spec, found = fetched
            started = time.monotonic()
            for item in items:
                try:
                    self._judge(item, entity_spec, found.get(item.key), today)
                except Exception as problem:
                    self.fail(item, Failure.of(Stage.COMPARE, problem))
            self._stage(entity, "compare", time.monotonic() - started)

    def _judge(self, item: PendingKey, entity_spec: Entity, candidate: Any, today: dt.date) -> None:
        """Compare one key on its first read and publish, or start its rechecks."""
        job, key = item.job, item.key
        control = job.controls[key]
        verdict = Verdict(Outcome.MISSING) if candidate is None \
            else self._compare(entity_spec, control, candidate, today)
        if verdict.outcome is Outcome.MATCH:
            self.finish(item, Outcome.MATCH, verdict.diffs, verdict, control, candidate, entity_spec)
            return
        route = self.rules().route_named(job.info.route)
        if route is not None and route.recheck.enabled \
                and self._rechecks.park(item, verdict, candidate, route.recheck.after):
            return
        self.finish(item, verdict.outcome, verdict.diffs, verdict, control, candidate, entity_spec)

    def finish(self, item: PendingKey, outcome: Outcome, diffs: tuple[FieldDiff, ...], verdict: Verdict,
               control: Any, candidate: Any, entity_spec: Entity) -> None:
        """Publish a key's outcome (first read, or the end of its rechecks: the item then
        carries the trail with every recheck, the one that ended them included)."""
        if item.list_read:
            self._finish_list(item, outcome, diffs)
            return
        trail, info = item.trail, item.job.info
        entry = self.sink.publish(Comparison(
            entity=info.entity, route=info.route, key=item.key, outcome=outcome, diffs=diffs,
            suppressed=verdict.suppressed, source=info.source, control=control, candidate=candidate,
            at=time.time(), unverified=unverified_paths(self.rules().entities.get(info.entity), control),
            rechecks=0 if trail is None else trail.step,
            recheck_seconds=0.0 if trail is None else time.monotonic() - trail.started,
            recheck_steps=() if trail is None else trail.steps),
            info)
        if entry is not None and outcome is Outcome.MISMATCH:
            self._maybe_explain(entry, entity_spec, control, candidate)

    def fail(self, item: PendingKey, failure: Failure, report: bool = True) -> None:
        """A key left without a verdict: its failure reported (unless it already was, for
        a whole batch), the key counted as an `error` outcome with the failure's reason."""
        if report:
            self.sink.raised(failure, item.job.info.entity)
        self._publish_error(item.job.info, item.key, failure)

    def _publish_error(self, job: JobInfo, key: str | None, failure: Failure) -> None:
        self.sink.publish(Comparison(entity=job.entity, route=job.route, key=key, outcome=Outcome.ERROR,
                                     reason=failure.reason, source=job.source, at=time.time()), job)

    def _stage(self, entity: str, stage: str, seconds: float) -> None:
        self.sink.observe_stage(entity, stage, seconds)

    async def _check_extras(self, job: ShadowJob, route: Route, replay: Replay | None = None) -> frozenset[str]:
        """List reads (listcheck.py): rows the source has that the API did not return
        (`extra`), and the list itself (members, order, duplicates, total) as one
        mismatch, rechecked on the route's schedule like a document. A read with a query
        parameter the route does not model is not checked (skipped `unmodeled_query`, or
        a finding with `strict_query`). Returns the members not to compare one by one."""
        info = job.info
        source = self.sources.get(info.source)
        entity_spec = self.rules().entities.get(info.entity)
        if source is None or entity_spec is None:
            return frozenset()  # the fetch reports the missing source / entity for every key
        try:
            checked = await asyncio.wait_for(run_list_check(source, entity_spec, route, job),
                                             self.settings.source_timeout)
        except Exception as problem:
            failure = Failure.of(Stage.LIST_KEYS, problem)
            self.sink.raised(failure, info.entity)
            self._publish_error(info, None, failure)
            return frozenset()
        key = list_key(dict(job.params))
        if checked.unmodeled:
            if route.strict_query:
                diffs = tuple(FieldDiff(f"?{name}", f"?{name}", "(not modeled by the route)", None, "unmodeled_query")
                              for name in checked.unmodeled)
                self.sink.publish(Comparison(entity=info.entity, route=info.route, key=key, outcome=Outcome.MISMATCH,
                                             diffs=diffs, listing=checked.context, source=info.source,
                                             at=time.time()), info)
            else:
                self.sink.skipped(info.entity, info.route, SkipReason.UNMODELED_QUERY)
            return frozenset()
        findings = checked.findings(route)
        if not findings:
            if not job.controls:  # an empty answer PostgreSQL agrees with: a list read has an outcome too
                self.sink.publish(Comparison(entity=info.entity, route=info.route, key=key, outcome=Outcome.MATCH,
                                             listing=checked.context, source=info.source, at=time.time()), info)
            return checked.unselected
        item = PendingKey(job, key, replay=replay, list_read=True, context=checked.context)
        if route.recheck.enabled and self._rechecks.park(item, Verdict(Outcome.MISMATCH, findings), None,
                                                         route.recheck.after):
            return checked.unselected
        self.finish(item, Outcome.MISMATCH, findings, Verdict(Outcome.MISMATCH, findings), None, None, entity_spec)
        return checked.unselected

    def _finish_list(self, item: PendingKey, outcome: Outcome, diffs: tuple[FieldDiff, ...]) -> None:
        """A list read's final outcome: rows only PostgreSQL selects as `extra` (one per
        key), the other list-level differences as one outcome under the list's key."""
        info, trail = item.job.info, item.trail
        if outcome is Outcome.MISMATCH:
            extras = [diff.candidate for diff in diffs if diff.kind == "extra_in_candidate"]
            for key in extras:
                self.sink.publish(Comparison(entity=info.entity, route=info.route, key=key, outcome=Outcome.EXTRA,
                                             listing=item.context, source=info.source, at=time.time()), info)
            diffs = tuple(diff for diff in diffs if diff.kind != "extra_in_candidate")
            if not diffs:
                return
        self.sink.publish(Comparison(entity=info.entity, route=info.route, key=item.key, outcome=outcome, diffs=diffs,
                                     listing=item.context, source=info.source, at=time.time(),
                                     rechecks=0 if trail is None else trail.step,
                                     recheck_seconds=0.0 if trail is None else time.monotonic() - trail.started,
                                     recheck_steps=() if trail is None else trail.steps), info)

    # ------------------------------------------------------------------ explain

    def _maybe_explain(self, entry: RecentMismatch, entity_spec: Entity, control: Any, candidate: Any) -> None:
        explain = self._explain
        if explain is None:
            return
        if self._explaining >= self.settings.explain_concurrency or not self._explain_budget.take():
            self.sink.dropped(DropReason.EXPLAIN_BUDGET)
            return
        self._explaining += 1
        self._tasks.spawn(self._run_explain(explain, entry, entity_spec, control, candidate), f"explain-{entry.id}")

    async def _run_explain(self, explain: Callable[..., list[FieldDiff]], entry: RecentMismatch, entity_spec: Entity,
                           control: Any, candidate: Any) -> None:
        started = time.monotonic()
        try:
            diffs = await asyncio.to_thread(explain, entity_spec, control, candidate)
            self.sink.explained(entry, diffs)
        except Exception as problem:
            self.sink.raised(Failure.of(Stage.EXPLAIN, problem), entry.entity)
        finally:
            self._explaining -= 1
            self._stage(entry.entity, "explain", time.monotonic() - started)

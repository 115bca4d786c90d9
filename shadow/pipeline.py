"""The shadow pipeline: everything that happens to a matched read after the client has
its answer. Runs on the event loop in N worker tasks, never on the request path.

    proxy ──offer()──▶ bounded queue ──▶ worker: parse body, keys, controls, sampling
        ──▶ one Source.fetch per (entity, source) for the whole batch (with a timeout)
        ──▶ compare ──▶ match | mismatch/missing ──▶ recheck heap (route's delay)
        ──▶ re-read in batches ──▶ transient | mismatch | missing ──▶ Sink.publish

`offer()` never waits: a full queue is a counted drop. Rechecks wait in one bounded
heap served by one task (not a sleeping task per key). deepdiff explanations of
persistent mismatches run in a thread, at most `explain_rate` per second; beyond that
they are dropped and counted, while every outcome is still counted exactly.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from shadow.model import Comparison, FieldDiff, Outcome, ShadowJob, SkipReason, Verdict
from shadow.publish import Sink
from shadow.sampling import TokenBucket, sampled_by_chance, sampled_by_key
from shadow.tasks import TaskSet
from shadow.tracing import request_context

log = logging.getLogger("shadow.pipeline")

MAX_EXPLAINS_IN_FLIGHT = 2
MAX_INFLATED_BYTES = 16 * 1024 * 1024  # a gzip body may not inflate past this (zip bombs)


@dataclass(frozen=True, slots=True)
class CapturedRead:
    """A matched 2xx read as the proxy hands it over: raw bytes, nothing parsed yet."""

    match: Any  # RouteMatch from RuleSet.match
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    content_type: str
    content_encoding: str
    trace_headers: tuple[tuple[str, str], ...]
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class PendingKey:
    """One key of a job on its way to the source (first read or recheck)."""

    job: ShadowJob
    key: str
    first: Verdict | None = None  # the first verdict, on a recheck
    first_candidate: Any = None


@dataclass(frozen=True)
class PipelineSettings:
    queue_size: int = 10000
    workers: int = 4
    batch_size: int = 50
    source_timeout: float = 2.0
    rate_limit: float = 0.0  # reads per second, 0 = unlimited
    explain_rate: float = 20.0  # deepdiff explanations per second
    recheck_capacity: int = 10000
    queue_bytes: int = 64 * 1024 * 1024  # body copies waiting in the queue; beyond -> queue_full


class Pipeline:
    """Bounded queue + batching workers + recheck heap. Start with `start()`, stop with
    `close()` (queued work is dropped and counted as `shutdown`)."""

    def __init__(self, settings: PipelineSettings, sink: Sink, rules: Callable[[], Any],
                 sources: Mapping[str, Any], compare: Callable[..., Verdict],
                 explain: Callable[..., list[FieldDiff]] | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self._rules = rules
        self.sources = dict(sources)
        self._compare = compare
        self._explain = explain
        self.queue: asyncio.Queue[CapturedRead] = asyncio.Queue(settings.queue_size)
        self._limit = TokenBucket(settings.rate_limit)
        self._explain_budget = TokenBucket(settings.explain_rate, burst=max(settings.explain_rate, 1.0))
        self._explaining = 0
        self._rechecks: list[tuple[float, int, PendingKey]] = []
        self._recheck_seq = itertools.count()
        self._recheck_wakeup = asyncio.Event()
        self._tasks = TaskSet("pipeline")
        self._closed = False
        self._busy = 0  # batches being processed (drain() waits for them)
        self._queued_bytes = 0  # memory stays bounded by bytes too, not only by count
        metrics = sink.metrics
        metrics.queue_capacity.set(settings.queue_size)
        metrics.queue_depth.set_function(self.queue.qsize)

    # ------------------------------------------------------------------ request path

    def admit(self, match: Any) -> bool:
        """On the request path, when a matched read's 2xx headers arrive: should its body
        be copied? Random sampling and the rate limit are decided here, so unsampled
        reads cost nothing more. Counts the skip when the answer is no."""
        route = route_of(match)
        rate, by_key = sampling_of(route)
        if not by_key and not sampled_by_chance(rate):
            self.sink.skipped(entity_name(route), route_name(route), SkipReason.NOT_SAMPLED)
            return False
        if not self._limit.take():
            self.sink.dropped(SkipReason.RATE_LIMITED, entity_name(route), route_name(route))
            return False
        return True

    def offer(self, read: CapturedRead) -> bool:
        """Queue a read without waiting; a full queue (or a closed pipeline) drops it."""
        if self._closed:
            route = route_of(read.match)
            self.sink.dropped(SkipReason.SHUTDOWN, entity_name(route), route_name(route))
            return False
        try:
            if self._queued_bytes + len(read.body) > self.settings.queue_bytes:
                raise asyncio.QueueFull
            self.queue.put_nowait(read)
            self._queued_bytes += len(read.body)
        except asyncio.QueueFull:
            route = route_of(read.match)
            self.sink.dropped(SkipReason.QUEUE_FULL, entity_name(route), route_name(route))
            return False
        return True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for number in range(self.settings.workers):
            self._tasks.spawn(self._work(), f"worker-{number}")
        self._tasks.spawn(self._serve_rechecks(), "rechecks")

    async def close(self) -> None:
        self._closed = True
        await self._tasks.close()
        while not self.queue.empty():
            route = route_of(self.queue.get_nowait().match)
            self.sink.dropped(SkipReason.SHUTDOWN, entity_name(route), route_name(route))
        for _, _, pending in self._rechecks:
            self.sink.dropped(SkipReason.SHUTDOWN, pending.job.entity, pending.job.route)
        self._rechecks.clear()
        self.sink.metrics.queue_depth.set(0)

    async def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty and no recheck or explanation is pending
        (tests, benchmarks, the demo's summary)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and not self._rechecks and self._busy == 0 and self._explaining == 0:
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
            self._queued_bytes -= sum(len(read.body) for read in batch)
            self._busy += 1
            try:
                await self._process(batch)
            except Exception as problem:  # a bug here must not stop the worker
                self.sink.raised("worker", problem)
            finally:
                self._busy -= 1
                for _ in batch:
                    queue.task_done()

    async def _process(self, batch: list[CapturedRead]) -> None:
        now = time.monotonic()
        pending: list[PendingKey] = []
        for read in batch:
            try:
                job = self._job_of(read)
            except Exception as problem:
                route = route_of(read.match)
                self.sink.raised("prepare", problem, entity_name(route))
                self._publish_error(entity_name(route), route_name(route), None, f"prepare: {problem}")
                continue
            if job is None:
                continue
            self.sink.child(self.sink.metrics.stage_seconds, job.entity, "queue").observe(now - read.enqueued_at)
            pending.extend(PendingKey(job, key) for key in job.controls)
            route = route_of(read.match)
            if is_complete_list(route):
                await self._check_extras(job, route)
        if pending:
            await self._fetch_and_compare(pending)

    def _job_of(self, read: CapturedRead) -> ShadowJob | None:
        """Parse the body, take the keys and the control documents; None when skipped."""
        route = route_of(read.match)
        entity, name = entity_name(route), route_name(route)
        body = _decoded(read.body, read.content_encoding, MAX_INFLATED_BYTES)
        if body is None or "json" not in read.content_type.lower():
            self.sink.skipped(entity, name, SkipReason.NOT_JSON)
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.sink.skipped(entity, name, SkipReason.NOT_JSON)
            return None
        try:
            controls = controls_of(read.match, read.query, read.headers, document)
        except InvalidKey:
            self.sink.skipped(entity, name, SkipReason.INVALID_KEY)
            return None
        if not controls:
            self.sink.skipped(entity, name, SkipReason.NO_DOCUMENT)
            return None
        rate, by_key = sampling_of(route)
        if by_key and rate < 1.0:
            chosen = {key: doc for key, doc in controls.items() if sampled_by_key(key, rate)}
            for _ in range(len(controls) - len(chosen)):
                self.sink.skipped(entity, name, SkipReason.NOT_SAMPLED)
            controls = chosen
            if not controls:
                return None
        return ShadowJob(
            entity=entity, route=name, source=source_of(route), controls=controls,
            params=params_of(read.match), enqueued_at=read.enqueued_at,
            trace_context=request_context(dict(read.trace_headers)) if read.trace_headers else None,
        )

    async def _fetch(self, entity: str, source_name: str, keys: list[str]) -> tuple[Any, dict[str, Any]] | str:
        """One batched source call: (the entity's rules, documents by key), or an error reason."""
        source = self.sources.get(source_name)
        if source is None:
            return f"fetch: no {source_name} source configured"
        try:
            entity_spec = entity_of(self._rules(), entity)
        except KeyError:  # removed by a reload since the read was queued
            return f"fetch: entity {entity!r} is not in the loaded rules"
        started = time.monotonic()
        try:
            found = await asyncio.wait_for(source.fetch(entity_spec, keys), self.settings.source_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            self.sink.raised("fetch", f"timeout after {self.settings.source_timeout}s ({len(keys)} keys)", entity)
            return "fetch: timeout"
        except Exception as problem:
            self.sink.raised("fetch", problem, entity)
            return f"fetch: {type(problem).__name__}: {problem}"
        finally:
            self.sink.child(self.sink.metrics.stage_seconds, entity, "fetch").observe(time.monotonic() - started)
        return entity_spec, found

    async def _fetch_and_compare(self, pending: list[PendingKey]) -> None:
        groups: dict[tuple[str, str], list[PendingKey]] = {}
        for item in pending:
            groups.setdefault((item.job.entity, item.job.source), []).append(item)
        today = dt.datetime.now(dt.timezone.utc).date()
        for (entity, source_name), items in groups.items():
            keys = list(dict.fromkeys(item.key for item in items))
            fetched = await self._fetch(entity, source_name, keys)
            if isinstance(fetched, str):
                for item in items:
                    self._publish_error(entity, item.job.route, item.key, fetched, item.job)
                continue
            entity_spec, found = fetched
            started = time.monotonic()
            for item in items:
                try:
                    self._judge(item, entity_spec, found.get(item.key), today)
                except Exception as problem:
                    self.sink.raised("compare", problem, entity)
                    self._publish_error(entity, item.job.route, item.key, f"compare: {type(problem).__name__}: {problem}", item.job)
            self.sink.child(self.sink.metrics.stage_seconds, entity, "compare").observe(time.monotonic() - started)

    def _judge(self, item: PendingKey, entity_spec: Any, candidate: Any, today: dt.date) -> None:
        job, key = item.job, item.key
        control = job.controls[key]
        verdict = (Verdict(Outcome.MISSING) if candidate is None
                   else self._compare(entity_spec, control, candidate, today))
        if verdict.outcome is Outcome.MATCH:
            if item.first is not None:  # converged on recheck: dual-write lag
                self._publish(job, key, Outcome.TRANSIENT, item.first, control, item.first_candidate)
            else:
                self._publish(job, key, Outcome.MATCH, verdict, control, candidate)
            return
        delay = recheck_delay_of(route_of_job(self._rules(), job))
        if item.first is None and delay > 0:
            self._schedule_recheck(PendingKey(job, key, verdict, candidate), delay)
            return
        entry = self._publish(job, key, verdict.outcome, verdict, control, candidate)
        if entry is not None and verdict.outcome is Outcome.MISMATCH:
            self._maybe_explain(entry, entity_spec, control, candidate)

    def _publish(self, job: ShadowJob, key: str, outcome: Outcome, verdict: Verdict, control: Any, candidate: Any):
        return self.sink.publish(Comparison(
            entity=job.entity, route=job.route, key=key, outcome=outcome, diffs=verdict.diffs,
            suppressed=verdict.suppressed, source=job.source, control=control, candidate=candidate, at=time.time(),
        ), job)

    def _publish_error(self, entity: str, route: str, key: str | None, reason: str, job: ShadowJob | None = None) -> None:
        source = job.source if job is not None else "postgres"
        self.sink.publish(Comparison(entity=entity, route=route, key=key, outcome=Outcome.ERROR, reason=reason,
                                     source=source, at=time.time()), job)

    async def _check_extras(self, job: ShadowJob, route: Any) -> None:
        """Complete list reads: rows the source has that the API did not return."""
        source = self.sources.get(job.source)
        if source is None:
            return
        try:
            entity_spec = entity_of(self._rules(), job.entity)
            listed = await asyncio.wait_for(source.list_keys(entity_spec, route, dict(job.params)), self.settings.source_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            self.sink.raised("list_keys", "timeout", job.entity)
            self._publish_error(job.entity, job.route, None, "list_keys: timeout", job)
            return
        except Exception as problem:
            self.sink.raised("list_keys", problem, job.entity)
            self._publish_error(job.entity, job.route, None, f"list_keys: {type(problem).__name__}: {problem}", job)
            return
        for key in sorted(set(listed) - set(job.controls)):
            self.sink.publish(Comparison(entity=job.entity, route=job.route, key=key, outcome=Outcome.EXTRA,
                                         source=job.source, at=time.time()), job)

    # ------------------------------------------------------------------ recheck

    def _schedule_recheck(self, item: PendingKey, delay: float) -> None:
        if len(self._rechecks) >= self.settings.recheck_capacity:
            # No room to wait: report what we saw (conservative for the gate) and count it.
            self.sink.dropped("recheck_full")
            self._publish(item.job, item.key, item.first.outcome, item.first, item.job.controls[item.key], item.first_candidate)
            return
        due = time.monotonic() + delay
        first_due = self._rechecks[0][0] if self._rechecks else None
        # keep only this key's control: a list read's other documents need not wait
        job = replace(item.job, controls={item.key: item.job.controls[item.key]}, attempt=1)
        heapq.heappush(self._rechecks, (due, next(self._recheck_seq), replace(item, job=job)))
        if first_due is None or due < first_due:
            self._recheck_wakeup.set()

    async def _serve_rechecks(self) -> None:
        while True:
            if not self._rechecks:
                self._recheck_wakeup.clear()
                await self._recheck_wakeup.wait()
                continue
            wait = self._rechecks[0][0] - time.monotonic()
            if wait > 0:
                self._recheck_wakeup.clear()
                try:
                    await asyncio.wait_for(self._recheck_wakeup.wait(), wait)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                continue
            now = time.monotonic()
            due: list[PendingKey] = []
            while self._rechecks and self._rechecks[0][0] <= now and len(due) < self.settings.batch_size:
                _, _, item = heapq.heappop(self._rechecks)
                due.append(item)
                self.sink.child(self.sink.metrics.stage_seconds, item.job.entity, "recheck_wait").observe(now - item.job.enqueued_at)
            self._busy += 1
            try:
                await self._fetch_and_compare(due)
            except Exception as problem:
                self.sink.raised("recheck", problem)
            finally:
                self._busy -= 1

    # ------------------------------------------------------------------ explain

    def _maybe_explain(self, entry: Any, entity_spec: Any, control: Any, candidate: Any) -> None:
        if self._explain is None:
            return
        if self._explaining >= MAX_EXPLAINS_IN_FLIGHT or not self._explain_budget.take():
            self.sink.dropped("explain_budget")
            return
        self._explaining += 1
        self._tasks.spawn(self._run_explain(entry, entity_spec, control, candidate), f"explain-{entry.id}")

    async def _run_explain(self, entry: Any, entity_spec: Any, control: Any, candidate: Any) -> None:
        started = time.monotonic()
        try:
            diffs = await asyncio.to_thread(self._explain, entity_spec, control, candidate)
            self.sink.explained(entry, diffs)
        except Exception as problem:
            self.sink.raised("explain", problem, entry.entity)
        finally:
            self._explaining -= 1
            self.sink.child(self.sink.metrics.stage_seconds, entry.entity, "explain").observe(time.monotonic() - started)



# ---------------------------------------------------------------------------- the rules
# What the pipeline reads from the rules engine (docs/architecture.md "Interfaces"),
# kept in one place so the rest of this module does not depend on their field names.


try:
    from shadow.rules import InvalidKey
except ImportError:  # pragma: no cover - only while the rules engine is not installed
    class InvalidKey(ValueError):  # type: ignore[no-redef]
        """A key that is not what the route expects (not an ObjectId, too long, ...)."""


def route_of(match: Any) -> Any:
    return match.route


def params_of(match: Any) -> Mapping[str, str]:
    return dict(getattr(match, "params", {}) or {})


def route_name(route: Any) -> str:
    return route.name


def entity_name(route: Any) -> str:
    entity = route.entity
    return entity if isinstance(entity, str) else entity.name


def source_of(route: Any) -> str:
    return getattr(route, "source", "postgres") or "postgres"


def sampling_of(route: Any) -> tuple[float, bool]:
    """(rate, by_key): by_key = deterministic by key hash."""
    return float(getattr(route, "sample", 1.0)), getattr(route, "sample_by", "random") == "key"


def recheck_delay_of(route: Any) -> float:
    return float(getattr(route, "recheck", 0.0) or 0.0) if route is not None else 0.0


def is_complete_list(route: Any) -> bool:
    return bool(getattr(route, "complete", False))


def entity_of(rules: Any, name: str) -> Any:
    return rules.entities[name]


def route_of_job(rules: Any, job: ShadowJob) -> Any:
    return rules.route_named(job.route)


def controls_of(match: Any, query: Mapping[str, str], headers: Mapping[str, str], body: Any) -> dict[str, Any]:
    """key -> control document for one read (empty: no document where the route
    says). Raises InvalidKey."""
    return match.route.controls(match, query, headers, body)


def _decoded(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """The body without its content coding (gzip/deflate), at most `limit` bytes; None
    when the coding is unknown or the body is corrupt or would inflate past the limit."""
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32 if coding != "deflate" else zlib.MAX_WBITS)
        plain = inflater.decompress(body, limit)
    except zlib.error:
        if coding != "deflate":
            return None
        try:  # raw deflate, as some servers send it
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            plain = inflater.decompress(body, limit)
        except zlib.error:
            return None
    return None if inflater.unconsumed_tail else plain



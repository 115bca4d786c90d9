"""The evidence writer: what the one sink publishes, aggregated and written to the
evidence store (shadow/publish/evidence_store.py) in batches.

    Sink.publish / merge / skipped / noisy ──▶ EvidenceWriter (in memory, O(paths))
        counts per (minute, entity, route, path, outcome)   a bounded dict, summed
        whole examples, redacted, ≤ examples_per_path per path and hour, ≤ max_examples queued
                   │ every flush_interval: one batch, one transaction, upsert-add
                   ▼
        PostgreSQL  shadow_evidence.findings / examples / pods

Fail-open: nothing here waits on the database from the sink's side; one batch is in
flight at a time. A batch the store does not take (down, slow, refusing) is counted in
`shadow_evidence_dropped_total{reason}`; its counts go back into the next batch while
there is room (so a short outage loses no count), its examples are dropped. What the
client gets and what Prometheus counts never depend on the store.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shadow.model import MAX_RECHECK_STEPS, NOTEWORTHY, Comparison, JobInfo, Outcome
from shadow.publish import evidence_store
from shadow.publish.redaction import DEFAULT, Redaction
from shadow.publish.sink import to_json
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    import asyncpg

    from shadow.config import Config
    from shadow.publish.metrics import Metrics
    from shadow.rules.reload import RulesHolder

log = logging.getLogger("shadow.publish.evidence")

#: the path of a finding that is about the route, not a field (comparisons, errors, skips)
ROUTE_TOTAL = ""
#: the path of a finding about the whole document (missing, extra)
WHOLE_DOCUMENT = "(document)"
#: distinct (minute, entity, route, path, outcome) keys held between two writes; beyond,
#: new keys are dropped and counted (reason backlog) until a write succeeds
MAX_PENDING_KEYS = 50_000
#: largest JSON document stored as an example (bigger ones are stored as a note)
MAX_DOCUMENT_CHARS = 256_000
#: outcomes whose example is worth keeping only with both documents
_DOCUMENTED = frozenset({Outcome.MISMATCH, Outcome.TRANSIENT, Outcome.UNSTABLE})


class DropReasons:
    """The `reason` label of shadow_evidence_dropped_total."""

    STORE_DOWN = "store_down"  # could not connect, or the write failed
    TIMEOUT = "timeout"  # the write took longer than the store's command timeout
    BACKLOG = "backlog"  # more distinct counts or examples waiting than the bounds allow


@dataclass(frozen=True)
class EvidenceSettings:
    """How the sidecar writes evidence (flags --evidence*, see shadow/config.py)."""

    dsn: str = field(repr=False)
    pod: str = ""
    retention: dt.timedelta = dt.timedelta(days=14)
    flush_interval: float = 1.0
    max_examples: int = 200  # examples waiting to be written
    examples_per_path: int = 5  # per (entity, route, path, outcome) and hour, per pod
    retention_interval: float = 600.0

    @property
    def pod_name(self) -> str:
        return self.pod or os.environ.get("POD_NAME") or socket.gethostname()


@dataclass(frozen=True, slots=True)
class Example:
    """One whole example, already redacted, as it is stored."""

    at: float
    entity: str
    route: str
    key: str | None
    outcome: str
    paths: tuple[str, ...]
    rules_version: str | None
    trace_id: str | None
    source: str
    params: Mapping[str, str]
    query: str | None
    rechecks: Mapping[str, Any]
    diffs: tuple[Mapping[str, Any], ...]
    control: Any
    candidate: Any


CountKey = tuple[int, str, str, str, str]  # minute (Unix s), entity, route, path, outcome


@dataclass(frozen=True, slots=True)
class Batch:
    counts: Mapping[CountKey, int]
    examples: tuple[Example, ...]


class EvidenceMetrics:
    """The writer's own metrics, on the sidecar's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter("shadow_evidence_dropped",
                               "Evidence batches (or parts) the store did not take, by reason",
                               ["reason"], registry=registry)
        self.written = Counter("shadow_evidence_written", "Evidence rows written, by kind (findings, examples)",
                               ["kind"], registry=registry)
        self.pending = Gauge("shadow_evidence_pending", "Distinct finding counts waiting to be written",
                             registry=registry)
        for reason in (DropReasons.STORE_DOWN, DropReasons.TIMEOUT, DropReasons.BACKLOG):
            self.dropped.labels(reason)


#: what the writer asks the sidecar at each heartbeat: rules version, queue depth, drops
#: by reason, errors by stage
Health = Callable[[], tuple[str | None, int, Mapping[str, float], Mapping[str, float]]]


class EvidenceWriter:
    """Aggregates findings in memory and writes them in batches (see the module doc)."""

    def __init__(self, settings: EvidenceSettings, registry: CollectorRegistry,
                 health: Health | None = None, recheck_schedule: Callable[[str], tuple[float, ...]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.pod = settings.pod_name
        self.metrics = EvidenceMetrics(registry)
        self._health = health
        self._schedule = recheck_schedule or (lambda route: ())
        self._clock = clock
        self._counts: collections.Counter[CountKey] = collections.Counter()
        self._examples: list[Example] = []
        #: examples kept this hour per (entity, route, first path, outcome): transients of a
        #: path do not use up the budget of its mismatches
        self._example_budget: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self._budget_hour = 0
        self._connection: asyncpg.Connection | None = None
        self._tasks = TaskSet("evidence")
        self._started = clock()
        self._last_retention = 0.0
        self._write_lock = asyncio.Lock()
        self._closed = False
        self.metrics.pending.set_function(lambda: len(self._counts))

    # ------------------------------------------------------------------ from the sink

    def comparison(self, comparison: Comparison, job: JobInfo | None, trace_id: str | None,
                   redaction: Redaction = DEFAULT) -> None:
        """Count one published outcome (and keep it as an example when noteworthy and
        the path still has room this hour)."""
        at = comparison.at or self._clock()
        entity, route, outcome = comparison.entity, comparison.route, comparison.outcome
        if outcome is Outcome.SKIPPED:
            self.count(entity, route, f"skipped:{comparison.reason or 'unknown'}", 1, at=at)
            return
        self.count(entity, route, outcome.value, 1, at=at)
        if outcome not in NOTEWORTHY:
            return
        paths = tuple(sorted({diff.path for diff in comparison.diffs})) or (WHOLE_DOCUMENT,)
        for path in paths:
            self.count(entity, route, outcome.value, 1, path=path, at=at)
        for path in sorted({diff.path for diff in comparison.suppressed}):
            self.count(entity, route, "suppressed", 1, path=path, at=at)
        self._maybe_keep(comparison, job, trace_id, redaction, paths, at)

    def count(self, entity: str, route: str, outcome: str, n: int, path: str = ROUTE_TOTAL,
              at: float | None = None) -> None:
        minute = int((at if at is not None else self._clock()) // 60 * 60)
        key = (minute, entity, route, path, outcome)
        if key not in self._counts and len(self._counts) >= MAX_PENDING_KEYS:
            self.metrics.dropped.labels(DropReasons.BACKLOG).inc()
            return
        self._counts[key] += n

    def noisy(self, entity: str, route: str, paths: Iterable[str]) -> None:
        for path in paths:
            self.count(entity, route, "noisy", 1, path=path)

    # ------------------------------------------------------------------ examples

    def _maybe_keep(self, comparison: Comparison, job: JobInfo | None, trace_id: str | None,
                    redaction: Redaction, paths: tuple[str, ...], at: float) -> None:
        if comparison.control is None and comparison.candidate is None and comparison.outcome in _DOCUMENTED:
            return  # its documents stayed in the worker (beyond its budget): nothing whole to show
        hour = int(at // 3600)
        if hour != self._budget_hour:
            self._budget_hour = hour
            self._example_budget.clear()
        budget_key = (comparison.entity, comparison.route, paths[0], comparison.outcome.value)
        if self._example_budget[budget_key] >= self.settings.examples_per_path:
            return
        if len(self._examples) >= self.settings.max_examples:
            self.metrics.dropped.labels(DropReasons.BACKLOG).inc()
            return
        self._example_budget[budget_key] += 1
        schedule = self._schedule(comparison.route)
        rules_version = self._health()[0] if self._health is not None else None
        self._examples.append(Example(
            at=at, entity=comparison.entity, route=comparison.route, key=comparison.key,
            outcome=comparison.outcome.value, paths=paths, rules_version=rules_version, trace_id=trace_id,
            source=comparison.source,
            params=dict(job.params) if job is not None else {},
            query=_query(job.query if job is not None else (), redaction),
            rechecks=_rechecks(comparison, schedule, redaction),
            diffs=tuple({"path": diff.path, "at": diff.at, "kind": diff.kind,
                         "control": redaction.side(diff.control, diff.path),
                         "candidate": redaction.side(diff.candidate, diff.path)} for diff in comparison.diffs),
            control=_bounded(redaction.side(comparison.control, "")),
            candidate=_bounded(redaction.side(comparison.candidate, "")),
        ))

    # ------------------------------------------------------------------ writing

    def take(self) -> Batch | None:
        """What is waiting, handed over for one write (None: nothing)."""
        if not self._counts and not self._examples:
            return None
        batch = Batch(dict(self._counts), tuple(self._examples))
        self._counts.clear()
        self._examples = []
        return batch

    def give_back(self, batch: Batch) -> None:
        """A batch the store did not take: its counts wait for the next write, as far as
        the bound allows (its examples are gone)."""
        for key, n in batch.counts.items():
            if key in self._counts or len(self._counts) < MAX_PENDING_KEYS:
                self._counts[key] += n
            else:
                self.metrics.dropped.labels(DropReasons.BACKLOG).inc()

    def start(self) -> None:
        self._tasks.spawn(self._run(), "evidence-writer")

    async def _run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush()

    async def flush(self) -> bool:
        """Write what is waiting; True when the store took it, so everything recorded
        before the call is stored. One write at a time: a call during a write waits for
        it, then writes what came since."""
        async with self._write_lock:
            batch = self.take()
            try:
                connection = await self._connected()
                await self._write(connection, batch)
                await self._maybe_retain(connection)
            except TimeoutError as problem:
                return self._failed(batch, DropReasons.TIMEOUT, problem)
            except Exception as problem:  # any driver or network failure: fail open
                return self._failed(batch, DropReasons.STORE_DOWN, problem)
            return True

    def _failed(self, batch: Batch | None, reason: str, problem: BaseException) -> bool:
        self.metrics.dropped.labels(reason).inc()
        log.warning("evidence store: batch not written (%s): %s: %s", reason, type(problem).__name__, problem)
        if batch is not None:
            self.give_back(batch)
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
        return False

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await evidence_store.connect(self.settings.dsn)
        return self._connection

    async def _write(self, connection: asyncpg.Connection, batch: Batch | None) -> None:
        health = self._health() if self._health is not None else (None, 0, {}, {})
        version, depth, drops, errors = health
        schema = evidence_store.SCHEMA
        async with connection.transaction():
            if batch is not None and batch.counts:
                rows = [(dt.datetime.fromtimestamp(minute, dt.UTC), entity, route, path, outcome, n)
                        for (minute, entity, route, path, outcome), n in batch.counts.items()]
                # one statement for the whole batch; sorted so concurrent pods lock rows in one order
                rows.sort(key=lambda row: row[:5])
                await connection.execute(
                    f"""INSERT INTO {schema}.findings AS f (minute, entity, route, path, outcome, count)
                        SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                                             $6::bigint[])
                        ON CONFLICT (entity, route, path, outcome, minute)
                        DO UPDATE SET count = f.count + EXCLUDED.count""",
                    *[list(column) for column in zip(*rows, strict=True)])
                await connection.execute(
                    f"""INSERT INTO {schema}.findings_hourly AS f
                            (hour, entity, route, path, outcome, count, first_minute, last_minute)
                        SELECT date_trunc('hour', m), e, r, p, o, sum(n), min(m), max(m)
                        FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::bigint[]) AS batch (m, e, r, p, o, n)
                        GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, 3, 4, 5, 1
                        ON CONFLICT (entity, route, path, outcome, hour)
                        DO UPDATE SET count = f.count + EXCLUDED.count,
                            first_minute = least(f.first_minute, EXCLUDED.first_minute),
                            last_minute = greatest(f.last_minute, EXCLUDED.last_minute)""",
                    *[list(column) for column in zip(*rows, strict=True)])
                self.metrics.written.labels("findings").inc(len(rows))
            if batch is not None and batch.examples:
                await connection.executemany(
                    f"""INSERT INTO {schema}.examples (at, entity, route, key, outcome, paths, pod, rules_version,
                            trace_id, source, params, query, rechecks, diffs, control, candidate)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb,
                                $15::jsonb, $16::jsonb)""",
                    [(dt.datetime.fromtimestamp(ex.at, dt.UTC), ex.entity, ex.route, ex.key, ex.outcome,
                      list(ex.paths), self.pod, ex.rules_version, ex.trace_id, ex.source, _json(ex.params), ex.query,
                      _json(ex.rechecks), _json(list(ex.diffs)), _json(ex.control), _json(ex.candidate))
                     for ex in batch.examples])
                self.metrics.written.labels("examples").inc(len(batch.examples))
            await connection.execute(
                f"""INSERT INTO {schema}.pods (pod, started, last_seen, rules_version, queue_depth, drops, errors)
                    VALUES ($1, $2, now(), $3, $4, $5::jsonb, $6::jsonb)
                    ON CONFLICT (pod) DO UPDATE SET started = EXCLUDED.started, last_seen = now(),
                        rules_version = EXCLUDED.rules_version, queue_depth = EXCLUDED.queue_depth,
                        drops = EXCLUDED.drops, errors = EXCLUDED.errors""",
                self.pod, dt.datetime.fromtimestamp(self._started, dt.UTC), version, int(depth),
                _json(self._drops(drops)), _json(dict(errors)))

    def _drops(self, sidecar_drops: Mapping[str, float]) -> dict[str, float]:
        """The sidecar's drops by reason, and the evidence writer's own as evidence_<reason>."""
        drops = {reason: value for reason, value in sidecar_drops.items() if value}
        for sample in next(iter(self.metrics.dropped.collect())).samples:
            if sample.name.endswith("_total") and sample.value:
                drops[f"evidence_{sample.labels['reason']}"] = sample.value
        return drops

    async def _maybe_retain(self, connection: asyncpg.Connection) -> None:
        now = self._clock()
        if now - self._last_retention < self.settings.retention_interval:
            return
        self._last_retention = now
        await evidence_store.apply_retention(connection, self.settings.retention,
                                             dt.datetime.fromtimestamp(now, dt.UTC))

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and try one last write (bounded: shutdown never waits on a
        down store longer than `timeout`)."""
        self._closed = True
        await self._tasks.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), timeout)
            self._connection = None


def _rechecks(comparison: Comparison, schedule: tuple[float, ...], redaction: Redaction) -> dict[str, Any]:
    """The recheck history of this outcome: the route's schedule, how many rechecks ran
    (both sides re-read each time) over how long, how they ended, and each step (when,
    how long after the first read, what it saw, the paths still differing: names only,
    a secret-named path shown by its rule name; at most MAX_RECHECK_STEPS)."""
    outcome = comparison.outcome
    ended = {
        Outcome.TRANSIENT: "converged on a recheck: both sides agreed",
        Outcome.MISMATCH: "the same difference on every recheck" if schedule else "no recheck configured",
        Outcome.MISSING: "still missing on every recheck" if schedule else "no recheck configured",
        Outcome.UNSTABLE: "the API's own answer kept changing between reads",
        Outcome.EXTRA: "list read: not rechecked",
    }.get(outcome, "")
    steps = [{"at": step.at, "after": round(step.after, 3), "saw": step.saw,
              "paths": [redaction.shown_name(path) for path in step.paths]}
             for step in comparison.recheck_steps[:MAX_RECHECK_STEPS]]
    return {"schedule_seconds": list(schedule), "done": comparison.rechecks,
            "seconds": round(comparison.recheck_seconds, 3), "ended": ended, "steps": steps}


def _query(query: tuple[tuple[str, Any], ...], redaction: Redaction) -> str | None:
    """A list read's query (name, [values]; a name may repeat) as a query string, each
    value redacted by its name."""
    if not query:
        return None
    pairs = [(str(name), value) for name, values in sorted(query)
             for value in (values if isinstance(values, (list, tuple)) else [values])]
    return urllib.parse.urlencode([(name, str(redaction.value(value, name))) for name, value in pairs])


def _bounded(document: Any) -> Any:
    if document is None:
        return None
    text = _json(document)
    if len(text) > MAX_DOCUMENT_CHARS:
        return {"(not stored)": f"document of {len(text)} characters (limit {MAX_DOCUMENT_CHARS})"}
    return document


def _json(value: Any) -> str:
    return to_json(value).decode()


def evidence_writer(config: Config, metrics: Metrics, rules: RulesHolder) -> EvidenceWriter:
    """The writer a sidecar's `Config` asks for (`--evidence*`), reporting the health of
    `metrics` (shadow/publish/metrics.Metrics) and the rules in force of `rules` (a
    RulesHolder)."""
    assert config.evidence is not None  # asked for only with --evidence
    settings = EvidenceSettings(dsn=config.evidence, pod=config.evidence_pod or "",
                                retention=dt.timedelta(days=config.evidence_retention))
    def labelled(metric: Any, label: str) -> dict[str, float]:
        return {sample.labels[label]: sample.value for sample in next(iter(metric.collect())).samples
                if sample.name.endswith("_total")}

    def health() -> tuple[str | None, int, Mapping[str, float], Mapping[str, float]]:
        current = rules.current
        depth = next(iter(metrics.queue_depth.collect())).samples[0].value  # not the whole registry
        return (getattr(current, "version", None), int(depth), labelled(metrics.dropped, "reason"),
                labelled(metrics.errors, "stage"))

    def schedule(route_name: str) -> tuple[float, ...]:
        route = rules.current.route_named(route_name) if rules.current is not None else None
        return tuple(route.recheck.after) if route is not None and route.recheck.enabled else ()

    return EvidenceWriter(settings, metrics.registry, health, schedule)

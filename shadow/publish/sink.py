"""The one sink: every outcome of the shadow side ends here, and only here is it turned
into Prometheus samples, OpenTelemetry spans, JSON-lines mismatch log lines and the
in-memory list of recent mismatches behind /mismatches.

Runs on the main process's event loop, called by the pipeline (in-process, or relayed
from the shadow worker process by shadow/replay/link.py) and by the proxy for drops;
everything it does is in-memory and O(differing fields), the log is written in batches
by `flush()` so a mismatch storm costs no syscall per mismatch.
"""
from __future__ import annotations

import collections
import itertools
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol

import orjson

from shadow.model import (
    NOTEWORTHY,
    Comparison,
    DropReason,
    Failure,
    FieldDiff,
    JobInfo,
    Outcome,
    RecentError,
    RecentMismatch,
    RedactedDiff,
    SkipReason,
    Stage,
)
from shadow.publish.listreason import render as render_list
from shadow.publish.metrics import Metrics
from shadow.publish.redaction import DEFAULT, Redaction, redact_text
from shadow.publish.tracing import Tracing, request_context
from shadow.replay.messages import Counts

log = logging.getLogger("shadow.publish.sink")

#: distinct `field` label values per entity before new ones become `other`
MAX_FIELDS_PER_ENTITY = 100
MAX_LABEL_LENGTH = 160
#: log lines kept in memory between flushes; beyond, lines are dropped and counted
MAX_PENDING_LOG_LINES = 20000
_SKIP_REASONS = frozenset(reason.value for reason in SkipReason)
ERROR_LOG_INTERVAL = 10.0  # seconds between two log lines about the same failing stage


@dataclass(frozen=True)
class Divergence:
    """A known divergence as the sink needs it: which field, until when."""

    entity: str
    field: str
    expires_at: float  # Unix time


def _redacted(diff: FieldDiff, redaction: Redaction) -> RedactedDiff:
    return RedactedDiff(path=redaction.shown_name(diff.path), at=redaction.shown_name(diff.at), kind=diff.kind,
                        control=redaction.side(diff.control, diff.path),
                        candidate=redaction.side(diff.candidate, diff.path))


def _text(redaction: Redaction, text: str | None) -> str | None:
    """A key or a reason as it may leave the process (a key can be an e-mail, an error
    message can quote a value)."""
    return None if text is None else redaction.text(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)  # Decimal, ObjectId, UUID, ...


def to_json(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


class Recorder(Protocol):
    """Where the sink also reports outcomes when an evidence store is configured
    (shadow/publish/evidence.py EvidenceWriter): in-memory, never waits, never raises."""

    def comparison(self, comparison: Comparison, job: JobInfo | None, trace_id: str | None,
                   redaction: Redaction = ...) -> None: ...

    def count(self, entity: str, route: str, outcome: str, n: int, path: str = ...,
              at: float | None = ...) -> None: ...

    def noisy(self, entity: str, route: str, paths: Iterable[str]) -> None: ...


# ----------------------------------------------------------------------------- the sink


class Sink:
    """Publishes outcomes. One per sidecar; `use_rules` is called on every (re)load."""

    def __init__(self, metrics: Metrics, tracing: Tracing | None = None, mismatch_log: str | IO[str] = "-",
                 recent: int = 200) -> None:
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self._log_target = mismatch_log
        self._log_file: IO[str] | None = None
        self._pending: list[str] = []
        self._recent: collections.deque[RecentMismatch] = collections.deque(maxlen=recent)
        #: the last error outcomes (entity, route, key, reason, at): why the shadow side failed
        self.recent_errors: collections.deque[RecentError] = collections.deque(maxlen=50)
        self._ids = itertools.count(1)
        self._redact: dict[str, Redaction] = {}
        self._fields: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.unverified: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._children: dict[tuple[Any, ...], Any] = {}  # labelled metric children, looked up once
        self._last_error_log: dict[str, float] = {}
        self._silenced_errors: collections.Counter[str] = collections.Counter()
        #: (entity, path) -> times the control differed from itself there (bounded like the field labels)
        self.noise: collections.Counter[tuple[str, str]] = collections.Counter()
        #: the evidence writer (--evidence), or None
        self.recorder: Recorder | None = None

    # -- rules

    def use_rules(self, redact: Mapping[str, Redaction | Iterable[str]], divergences: Iterable[Divergence]) -> None:
        """Take the redaction (or just the redact paths) per entity and the known
        divergences of newly loaded rules."""
        self._redact = {entity: how if isinstance(how, Redaction) else Redaction.of(how) for entity,
                        how in redact.items()}
        self.metrics.divergence_expiry.clear()
        for divergence in divergences:
            self.metrics.divergence_expiry.labels(divergence.entity,
                                                  self.field_label(divergence.entity,
                                                                   divergence.field)).set(divergence.expires_at)

    def child(self, metric: Any, *labels: str) -> Any:
        """The labelled child of `metric` (prometheus_client's labels() takes a lock
        and builds a tuple each call; outcomes are published thousands of times a second)."""
        cache_key = (id(metric), *labels)
        child = self._children.get(cache_key)
        if child is None:
            child = self._children[cache_key] = metric.labels(*labels)
        return child

    # -- outcomes

    def publish(self, comparison: Comparison, job: JobInfo | None = None) -> RecentMismatch | None:
        """Count one outcome; log and remember it when noteworthy. Returns the ring entry.
        `job`: what the sink needs of the outcome's job (queueing time, trace, request)."""
        entity, route, outcome = comparison.entity, comparison.route, comparison.outcome
        metrics = self.metrics
        self.counts[entity][outcome.value] += 1
        for path in comparison.unverified:  # what is *not* verified stays visible (issue 12)
            self.child(metrics.unverifiable, entity, path).inc()
            self.unverified[entity][path] += 1
        if outcome is Outcome.SKIPPED:
            self.child(metrics.skipped, entity, route, comparison.reason or "unknown").inc()
            if self.recorder is not None:
                self.recorder.comparison(comparison, job, None)
            return None
        self.child(metrics.comparisons, entity, route, outcome.value).inc()
        if outcome is Outcome.MISMATCH:
            for path in {diff.path for diff in comparison.diffs}:
                self.child(metrics.mismatch_fields, entity, self.field_label(entity, path)).inc()
        elif outcome is Outcome.TRANSIENT:
            for path in {diff.path for diff in comparison.diffs}:
                self.child(metrics.transient_fields, entity, self.field_label(entity, path)).inc()
        for path in {diff.path for diff in comparison.suppressed}:
            self.child(metrics.suppressed, entity, self.field_label(entity, path)).inc()
        trace_id = self._span(comparison, job)
        if self.recorder is not None:
            self.recorder.comparison(comparison, job, trace_id, self._redact.get(entity, DEFAULT))
        if outcome is Outcome.ERROR:
            redact = self._redact.get(entity, DEFAULT)
            self.recent_errors.append(RecentError(at=comparison.at or time.time(), entity=entity, route=route,
                                                  key=_text(redact, comparison.key),
                                                  reason=_text(redact, comparison.reason)))
        if outcome not in NOTEWORTHY:
            return None
        entry = self._remember(comparison, trace_id)
        self._log_line(entry)
        return entry

    def skipped(self, entity: str, route: str, reason: SkipReason) -> None:
        self.counts[entity][Outcome.SKIPPED.value] += 1
        self.child(self.metrics.skipped, entity, route, reason.value).inc()
        if self.recorder is not None:
            self.recorder.count(entity, route, f"skipped:{reason.value}", 1)

    def dropped(self, reason: DropReason, entity: str | None = None, route: str | None = None) -> None:
        """Shadow work given up to protect the user path (queue full, rate limit, ...)."""
        reason = DropReason(reason)  # the member, also when handed its label value
        self.child(self.metrics.dropped, reason.value).inc()
        skip = reason.skip
        if entity is not None and route is not None and skip is not None:
            self.skipped(entity, route, skip)

    def raised(self, failure: Failure, entity: str | None = None) -> None:
        """Every shadow-side failure comes here, once: counted by stage, logged (throttled)."""
        stage, error = failure.stage.value, failure.error
        self.child(self.metrics.errors, stage).inc()
        now = time.monotonic()
        if now - self._last_error_log.get(stage, -ERROR_LOG_INTERVAL) < ERROR_LOG_INTERVAL:
            self._silenced_errors[stage] += 1
            return
        self._last_error_log[stage] = now
        silenced = self._silenced_errors.pop(stage, 0)
        more = f" ({silenced} more since the last report)" if silenced else ""
        detail = redact_text(f"{failure.kind}: {failure.message}" if failure.message else failure.kind)
        if error is not None and not isinstance(error, (TimeoutError, OSError)):
            # the traceback as text, through redaction: its last line repeats the message,
            # which may quote a value (a driver's "invalid input: ..." error)
            detail += "\n" + redact_text("".join(traceback.format_exception(error)).rstrip())
        log.warning("shadow %s failed%s%s: %s", stage, f" for {entity}" if entity else "", more, detail)

    def noisy(self, entity: str, route: str, paths: Iterable[str]) -> None:
        """Paths where two reads of the control, back to back, differed: generated per
        request. Counted (shadow_noisy_fields_total) and shown with a suggested
        `ignore`; never ignored automatically."""
        for path in paths:
            label = self.field_label(entity, path)
            self.child(self.metrics.noisy_fields, entity, label).inc()
            self.noise[(entity, label)] += 1
        if self.recorder is not None:
            self.recorder.noisy(entity, route, paths)

    def noisiest(self, limit: int = 10) -> list[dict[str, Any]]:
        """The noisiest paths, most first, each with the rule line that would ignore it."""
        return [{"entity": entity, "path": path, "count": count, "suggest": f"ignore: ['{path}']"}
                for (entity, path), count in self.noise.most_common(limit)]

    def observe_stage(self, entity: str, stage: str, seconds: float) -> None:
        """Time one pipeline stage took for one entity (shadow_stage_seconds)."""
        self.child(self.metrics.stage_seconds, entity, stage).observe(seconds)

    def watch_queue(self, capacity: int, depth: Callable[[], int]) -> None:
        """The shadow queue's capacity, and how to read its depth at scrape time."""
        self.metrics.queue_capacity.set(capacity)
        self.metrics.queue_depth.set_function(depth)

    def merge(self, counts: Counts) -> None:
        """Add what a shadow worker counted since its last report (shadow/replay/relay.py):
        the same metrics as one publish/skipped/dropped/observe_stage call per event."""
        metrics = self.metrics
        recorder = self.recorder
        for entity, route, outcome, n in counts.comparisons:
            self.counts[entity][outcome] += n
            self.child(metrics.comparisons, entity, route, outcome).inc(n)
            if recorder is not None:
                recorder.count(entity, route, outcome, n)
        for entity, path, n in counts.suppressed:
            self.child(metrics.suppressed, entity, self.field_label(entity, path)).inc(n)
        for entity, route, reason, n in counts.skipped:
            self.counts[entity][Outcome.SKIPPED.value] += n
            self.child(metrics.skipped, entity, route, reason).inc(n)
            if recorder is not None:
                recorder.count(entity, route, f"skipped:{reason}", n)
        for reason, dropped_entity, dropped_route, n in counts.dropped:
            self.child(metrics.dropped, reason).inc(n)
            if dropped_entity is not None and dropped_route is not None and reason in _SKIP_REASONS:
                self.counts[dropped_entity][Outcome.SKIPPED.value] += n
                self.child(metrics.skipped, dropped_entity, dropped_route, reason).inc(n)
                if recorder is not None:
                    recorder.count(dropped_entity, dropped_route, f"skipped:{reason}", n)
        for entity, stage, buckets, total in counts.stages:
            # prometheus_client has no bulk observe: add to the child's bucket values
            # (non-cumulative per bucket, as observe() keeps them) and its sum
            child = self.child(metrics.stage_seconds, entity, stage)
            child._sum.inc(total)
            for value, n in zip(child._buckets, buckets, strict=True):
                if n:
                    value.inc(n)

    def explained(self, entry: RecentMismatch, diffs: Iterable[FieldDiff]) -> None:
        """Attach deepdiff's detail to a ring entry (it arrives later, off the loop): a
        new entry replaces the old one in the ring, unless the ring has moved past it."""
        redact = self._redact.get(entry.entity, DEFAULT)
        detailed = replace(entry, explained=tuple(_redacted(diff, redact) for diff in diffs))
        for index in range(len(self._recent) - 1, -1, -1):  # newest first: it is usually recent
            if self._recent[index].id == entry.id:
                self._recent[index] = detailed
                return

    # -- views

    def recent(self, entity: str | None = None, limit: int | None = None) -> list[RecentMismatch]:
        """Newest first."""
        entries = [entry for entry in reversed(self._recent) if entity is None or entry.entity == entity]
        return entries[:limit] if limit is not None else entries

    def field_label(self, entity: str, path: str) -> str:
        """The bounded `field` label for a collapsed path: the first
        MAX_FIELDS_PER_ENTITY distinct paths of an entity keep their name, later ones
        are `other`."""
        known = self._fields[entity]
        label = known.get(path)
        if label is None:
            label = redact_text(path)[:MAX_LABEL_LENGTH] if len(known) < MAX_FIELDS_PER_ENTITY else "other"
            if len(known) < MAX_FIELDS_PER_ENTITY * 4:  # remember `other` paths too, boundedly
                known[path] = label
        return label

    # -- internals

    def _remember(self, comparison: Comparison, trace_id: str | None) -> RecentMismatch:
        redact = self._redact.get(comparison.entity, DEFAULT)
        diffs = tuple(_redacted(diff, redact) for diff in comparison.diffs)
        if comparison.outcome is Outcome.MISSING and not diffs:
            diffs = (RedactedDiff("", "", "missing_in_candidate", redact.side(comparison.control, ""), None),)
        if comparison.outcome is Outcome.EXTRA and not diffs:
            diffs = (RedactedDiff("", "", "extra_in_candidate", None,
                                  f"a row in {comparison.source} the API's complete list did not show"),)
        entry = RecentMismatch(
            id=next(self._ids), at=comparison.at or time.time(), entity=comparison.entity, route=comparison.route,
            key=_text(redact, comparison.key), outcome=comparison.outcome.value, source=comparison.source,
            reason=(_text(redact, comparison.reason) if comparison.listing is None
                    else render_list(comparison.listing, redact)),  # each value redacted by its name
            diffs=diffs, suppressed=tuple(sorted({diff.path for diff in comparison.suppressed})), trace_id=trace_id,
        )
        self._recent.append(entry)
        return entry

    def _log_line(self, entry: RecentMismatch) -> None:
        if len(self._pending) >= MAX_PENDING_LOG_LINES:
            self.metrics.dropped.labels(DropReason.LOG_BACKLOG.value).inc()
            return
        line = entry.as_json()
        line["at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry.at)) + f".{int(entry.at % 1 * 1000):03d}Z"
        self._pending.append(to_json(line).decode())

    def _span(self, comparison: Comparison, job: JobInfo | None) -> str | None:
        if not self.tracing.enabled:
            return None
        from opentelemetry.trace import StatusCode

        start_ns = None
        if job is not None and job.enqueued_at:
            start_ns = time.time_ns() - int((time.monotonic() - job.enqueued_at) * 1e9)
        redact = self._redact.get(comparison.entity, DEFAULT)
        span = self.tracing.tracer.start_span(
            "shadow.compare", context=request_context(job.trace) if job is not None else None, start_time=start_ns,
            attributes={"shadow.entity": comparison.entity, "shadow.route": comparison.route,
                        "shadow.outcome": comparison.outcome.value, "shadow.source": comparison.source,
                        "shadow.key": redact.text(comparison.key or ""),
                        "shadow.diff_paths": sorted({redact.shown_name(d.path) for d in comparison.diffs})},
        )
        if comparison.outcome is Outcome.ERROR:
            span.set_status(StatusCode.ERROR, redact.text(comparison.reason or "error"))
        span.end()
        return format(span.get_span_context().trace_id, "032x")

    # -- lifecycle

    def flush(self) -> None:
        """Write pending mismatch log lines (called every second and at shutdown)."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            out = self._open_log()
            out.write("\n".join(lines) + "\n")
            out.flush()
        except OSError as problem:
            self.raised(Failure.of(Stage.LOG, problem))

    def _open_log(self) -> IO[str]:
        if self._log_file is None:
            target = self._log_target
            if not isinstance(target, str):
                self._log_file = target
            elif target == "-":
                self._log_file = sys.stderr
            else:
                self._log_file = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return self._log_file

    def close(self) -> None:
        self.flush()
        if self._log_file is not None and isinstance(self._log_target, str) and self._log_target != "-":
            self._log_file.close()
        self._log_file = None
        self.tracing.close()

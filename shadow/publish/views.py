"""What the evidence pages show, computed first and frozen: per entity, per route and
per failing path (as Diffy's JoinedDifferences), the pods' health, examples. Built
either from a sidecar's own memory (`from_memory`, the admin page) or from the
evidence store (shadow/console/queries.py); rendered by the same Jinja2 templates
(shadow/publish/render.py).
"""
from __future__ import annotations

import collections
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, get_args

from shadow.model import (
    MAX_RECHECK_PATHS,
    MAX_RECHECK_STEPS,
    RecentError,
    RecentMismatch,
    RecheckSaw,
    RecheckStep,
    RedactedDiff,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.samples import Sample

    from shadow.publish.sink import Sink

#: outcomes that count as a comparison of the route (skips are not comparisons)
COMPARED = ("match", "mismatch", "transient", "unstable", "missing", "extra", "error")
#: a persistent finding: the difference held on every recheck
PERSISTENT = ("mismatch", "missing", "extra")
#: the time ranges the filters offer, in seconds
RANGES: Mapping[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "24h"
PAGE_SIZE = 50
TREND_POINTS = 24


def percent(part: int, whole: int) -> float | None:
    return None if whole <= 0 else 100.0 * part / whole


@dataclass(frozen=True)
class Filters:
    """What the reader asked for; kept in the URL (`query()` rebuilds it)."""

    entity: str = ""
    route: str = ""
    outcome: str = ""
    path: str = ""
    range: str = DEFAULT_RANGE
    exclude_noise: bool = False
    page: int = 1

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """From a request's query string; anything unknown or malformed falls back to the
        default (a filter never raises on hostile input)."""
        def text(name: str, limit: int = 300) -> str:
            value = query.get(name, "")
            return value[:limit] if value.isprintable() else ""

        chosen = text("range")
        try:
            page = max(1, min(int(query.get("page", "1")), 100_000))
        except ValueError:
            page = 1
        outcome = text("outcome")
        return cls(entity=text("entity"), route=text("route"),
                   outcome=outcome if outcome in (*COMPARED, "noisy") else "", path=text("path"),
                   range=chosen if chosen in RANGES else DEFAULT_RANGE,
                   exclude_noise=query.get("noise") == "exclude", page=page)

    @property
    def seconds(self) -> int:
        return RANGES[self.range]

    def query(self, **changes: Any) -> str:
        """The query string of these filters with `changes` applied (e.g. page=2)."""
        changed = replace(self, **changes)
        pairs = [(name, value) for name, value in (
            ("entity", changed.entity), ("route", changed.route), ("outcome", changed.outcome),
            ("path", changed.path), ("range", changed.range if changed.range != DEFAULT_RANGE else ""),
            ("noise", "exclude" if changed.exclude_noise else ""),
            ("page", str(changed.page) if changed.page > 1 else "")) if value]
        return urllib.parse.urlencode(pairs)


@dataclass(frozen=True)
class EntityRow:
    entity: str
    comparisons: int
    persistent: int
    transient: int
    errors: int
    last_failure: float | None = None
    clean_for: float | None = None  # seconds since the last persistent finding (or the first data)
    clean_window: float | None = None  # the gate's clean window, seconds
    gate: str | None = None  # the gate's last verdict on this entity and its reasons
    divergences: tuple[tuple[str, float], ...] = ()  # known divergences: (path, expires at)
    layers: tuple[tuple[str, str, float], ...] = ()  # the last verify run per layer: (layer, status, at)

    @property
    def status(self) -> str:
        if self.comparisons == 0:
            return "no data"
        return "failing" if self.persistent else "clean"


@dataclass(frozen=True)
class RouteRow:
    entity: str
    route: str
    comparisons: int
    mismatches: int  # persistent: mismatch + missing + extra
    transients: int
    unstable: int
    errors: int
    skipped: tuple[tuple[str, int], ...]
    last_finding: float | None

    @property
    def mismatch_pct(self) -> float | None:
        return percent(self.mismatches, self.comparisons)

    @property
    def transient_pct(self) -> float | None:
        return percent(self.transients, self.comparisons)


@dataclass(frozen=True)
class PathRow:
    entity: str
    path: str
    persistent: int
    transient: int
    unstable: int
    noisy: int
    routes: tuple[str, ...]
    route_comparisons: int  # comparisons of the routes the path failed on
    first_seen: float | None
    last_seen: float | None
    trend: tuple[int, ...] = ()  # persistent findings per slice of the window, oldest first

    @property
    def pct(self) -> float | None:
        return percent(self.persistent, self.route_comparisons)


@dataclass(frozen=True)
class PodRow:
    pod: str
    last_seen: float
    rules_version: str | None
    queue_depth: int
    drops: tuple[tuple[str, float], ...]
    errors: tuple[tuple[str, float], ...]
    reporting: bool


@dataclass(frozen=True)
class ExampleRow:
    """One kept example in a list (the whole one is an `ExampleView`)."""

    id: int | str
    at: float
    entity: str
    route: str
    key: str | None
    outcome: str
    paths: tuple[str, ...]
    pod: str
    diffs: tuple[RedactedDiff, ...] = ()
    trace_id: str | None = None
    reason: str | None = None
    suppressed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocLine:
    """One line of a pretty-printed document; `differs` when its path is one of the
    differing locations (or inside one)."""

    text: str
    path: str
    differs: bool


@dataclass(frozen=True)
class RecheckHistory:
    """An example's recheck history: the route's schedule, how many rechecks ran (both
    sides re-read each time) over how long, how they ended, and what each one saw."""

    schedule_seconds: tuple[float, ...] = ()
    done: int = 0
    seconds: float = 0.0
    ended: str = ""
    steps: tuple[RecheckStep, ...] = ()


@dataclass(frozen=True)
class ExampleView:
    row: ExampleRow
    source: str
    rules_version: str | None
    params: Mapping[str, Any]
    query: str | None
    rechecks: RecheckHistory
    control: tuple[DocLine, ...]
    candidate: tuple[DocLine, ...]


@dataclass(frozen=True)
class VerifyRun:
    id: int
    at: float
    layer: str
    outcome: str
    summary: Mapping[str, Any]
    documents: tuple[tuple[str, str, str, str], ...]  # entity, key, kind, detail


@dataclass(frozen=True)
class GateRecord:
    at: float
    verdict: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Overview:
    """Everything one evidence page shows."""

    where: str  # "store" (the console) or "memory" (one pod's admin page)
    generated_at: float
    filters: Filters
    entities: tuple[EntityRow, ...]
    routes: tuple[RouteRow, ...]
    paths: tuple[PathRow, ...]
    has_next: bool
    pods: tuple[PodRow, ...] = ()
    recent: tuple[ExampleRow, ...] = ()
    transients: tuple[ExampleRow, ...] = ()
    noisy: tuple[tuple[str, str, int], ...] = ()  # entity, path, times the control moved there
    errors: tuple[RecentError, ...] = ()
    verify_runs: tuple[VerifyRun, ...] = ()
    gate: tuple[GateRecord, ...] = ()
    rules_version: str | None = None
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # filter choices


# ----------------------------------------------------------------------------- stored JSON


def diffs_of(stored: object) -> tuple[RedactedDiff, ...]:
    """An example's differences as the store keeps them (a JSON list of objects, already
    redacted); anything malformed is left out rather than shown wrongly."""
    if not isinstance(stored, list):
        return ()
    return tuple(RedactedDiff(path=str(d.get("path") or ""), at=str(d.get("at") or ""), kind=str(d.get("kind") or ""),
                              control=d.get("control"), candidate=d.get("candidate"))
                 for d in stored if isinstance(d, Mapping))


def history_of(stored: object) -> RecheckHistory:
    """An example's recheck history as the store keeps it (evidence.py `_rechecks`);
    examples written before the steps were kept have none."""
    if not isinstance(stored, Mapping):
        return RecheckHistory()
    steps = (_step(step) for step in _listed(stored.get("steps"))[:MAX_RECHECK_STEPS])
    return RecheckHistory(
        schedule_seconds=tuple(_number(s) for s in _listed(stored.get("schedule_seconds"))),
        done=int(_number(stored.get("done"))), seconds=_number(stored.get("seconds")),
        ended=str(stored.get("ended") or ""), steps=tuple(step for step in steps if step is not None))


def _step(stored: object) -> RecheckStep | None:
    if not isinstance(stored, Mapping) or stored.get("saw") not in get_args(RecheckSaw):
        return None
    paths = tuple(path for path in _listed(stored.get("paths")) if isinstance(path, str))
    return RecheckStep(at=_number(stored.get("at")), after=_number(stored.get("after")), saw=stored["saw"],
                       paths=paths[:MAX_RECHECK_PATHS])


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ----------------------------------------------------------------------------- documents


def document_lines(document: Any, differing: Iterable[str]) -> tuple[DocLine, ...]:
    """`document` pretty-printed one value per line, each line knowing its exact path
    (`offers[2].status`), marked when that path is, or is inside, a differing one."""
    marks = tuple(at for at in differing)
    lines: list[DocLine] = []

    def differs(path: str) -> bool:
        return any(path == at or at == "" or path.startswith((at + ".", at + "[")) for at in marks)

    def walk(value: Any, path: str, indent: str, label: str, last: bool) -> None:
        comma = "" if last else ","
        if isinstance(value, Mapping) and value:
            lines.append(DocLine(f"{indent}{label}{{", path, differs(path)))
            items = list(value.items())
            for index, (name, item) in enumerate(items):
                child = f"{path}.{name}" if path else str(name)
                walk(item, child, indent + "  ", f"{_scalar(str(name))}: ", index == len(items) - 1)
            lines.append(DocLine(f"{indent}}}{comma}", path, differs(path)))
        elif isinstance(value, (list, tuple)) and value:
            lines.append(DocLine(f"{indent}{label}[", path, differs(path)))
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", indent + "  ", "", index == len(value) - 1)
            lines.append(DocLine(f"{indent}]{comma}", path, differs(path)))
        else:
            lines.append(DocLine(f"{indent}{label}{_scalar(value)}{comma}", path, differs(path)))

    if document is None:
        return (DocLine("(absent)", "", True),)
    walk(document, "", "", "", True)
    return tuple(lines)


def _scalar(value: Any) -> str:
    import orjson

    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return orjson.dumps(str(value)).decode()


# ----------------------------------------------------------------------------- from memory


def _samples(registry: CollectorRegistry, name: str) -> Iterable[Sample]:
    for metric in registry.collect():
        if metric.name == name:
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    yield sample


def _row(entry: RecentMismatch) -> ExampleRow:
    return ExampleRow(id=entry.id, at=entry.at, entity=entry.entity, route=entry.route, key=entry.key,
                      outcome=entry.outcome, paths=tuple(sorted({d.path for d in entry.diffs})), pod="",
                      diffs=entry.explained if entry.explained else entry.diffs, trace_id=entry.trace_id,
                      reason=entry.reason, suppressed=entry.suppressed)


def from_memory(sink: Sink, rules_version: str | None, filters: Filters, now: float | None = None) -> Overview:
    """One pod's page from what its sink holds: the counters (every comparison since the
    start) and the ring of recent noteworthy outcomes (paths' first and last seen and
    trends are over the ring only)."""
    now = time.time() if now is None else now
    registry = sink.metrics.registry
    per_route: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    skipped: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for sample in _samples(registry, "shadow_comparisons"):
        per_route[sample.labels["entity"], sample.labels["route"]][sample.labels["outcome"]] += int(sample.value)
    for sample in _samples(registry, "shadow_skipped"):
        skipped[sample.labels["entity"], sample.labels["route"]][sample.labels["reason"]] += int(sample.value)
    ring: list[RecentMismatch] = list(sink.recent())
    wanted = [entry for entry in ring if _matches(entry, filters)]
    last_finding: dict[tuple[str, str], float] = {}
    for entry in ring:
        key = (entry.entity, entry.route)
        last_finding[key] = max(last_finding.get(key, 0.0), entry.at)
    routes = tuple(
        RouteRow(entity, route, sum(c[o] for o in COMPARED), sum(c[o] for o in PERSISTENT), c["transient"],
                 c["unstable"], c["error"], tuple(sorted(skipped[entity, route].items())),
                 last_finding.get((entity, route)))
        for (entity, route), c in sorted({**{k: collections.Counter[str]() for k in skipped}, **per_route}.items())
        if (not filters.entity or entity == filters.entity) and (not filters.route or route == filters.route))
    compared = {(row.entity, row.route): row.comparisons for row in routes}
    paths = _paths_from_ring(wanted, compared, sink.noise, filters, now)
    entities = _entities(routes)
    start = (filters.page - 1) * PAGE_SIZE
    return Overview(
        where="memory", generated_at=now, filters=filters, entities=entities, routes=routes,
        paths=tuple(paths[start:start + PAGE_SIZE]), has_next=len(paths) > start + PAGE_SIZE,
        recent=tuple(_row(e) for e in wanted if e.outcome != "transient"),
        transients=() if filters.exclude_noise else tuple(_row(e) for e in wanted if e.outcome == "transient"),
        noisy=tuple((entity, path, count) for (entity, path), count in sink.noise.most_common(10)),
        errors=tuple(reversed(sink.recent_errors)), rules_version=rules_version,
        options=_options(routes))


def _matches(entry: RecentMismatch, filters: Filters) -> bool:
    return ((not filters.entity or entry.entity == filters.entity)
            and (not filters.route or entry.route == filters.route)
            and (not filters.outcome or entry.outcome == filters.outcome)
            and (not filters.path or any(filters.path in d.path for d in entry.diffs)))


def _paths_from_ring(entries: list[RecentMismatch], compared: Mapping[tuple[str, str], int],
                     noise: Mapping[tuple[str, str], int], filters: Filters, now: float) -> list[PathRow]:
    found: dict[tuple[str, str], list[RecentMismatch]] = collections.defaultdict(list)
    for entry in entries:
        for path in {d.path or "(document)" for d in entry.diffs} or {"(document)"}:
            found[entry.entity, path].append(entry)
    oldest = min((entry.at for entry in entries), default=now)
    rows = []
    for (entity, path), seen in found.items():
        persistent = sum(1 for e in seen if e.outcome in PERSISTENT)
        if filters.exclude_noise and not persistent:
            continue
        routes = tuple(sorted({e.route for e in seen}))
        rows.append(PathRow(
            entity, path, persistent, sum(1 for e in seen if e.outcome == "transient"),
            sum(1 for e in seen if e.outcome == "unstable"), noise.get((entity, path), 0), routes,
            sum(compared.get((entity, route), 0) for route in routes), min(e.at for e in seen),
            max(e.at for e in seen), trend([e.at for e in seen if e.outcome in PERSISTENT], oldest, now)))
    rows.sort(key=lambda row: (-row.persistent, -row.transient, row.entity, row.path))
    return rows


def trend(stamps: Iterable[float], start: float, end: float, points: int = TREND_POINTS) -> tuple[int, ...]:
    """Counts of `stamps` in `points` equal slices of [start, end]."""
    buckets = [0] * points
    width = max(end - start, 1e-9) / points
    for stamp in stamps:
        buckets[min(points - 1, max(0, int((stamp - start) / width)))] += 1
    return tuple(buckets)


def _entities(routes: Iterable[RouteRow]) -> tuple[EntityRow, ...]:
    return tuple(EntityRow(entity, *numbers) for entity, numbers in sorted(entity_totals(routes).items()))


def entity_totals(routes: Iterable[RouteRow]) -> dict[str, tuple[int, int, int, int]]:
    """Per entity: comparisons, persistent, transient, errors over its routes."""
    totals: dict[str, tuple[int, int, int, int]] = {}
    for row in routes:
        c, p, t, e = totals.get(row.entity, (0, 0, 0, 0))
        totals[row.entity] = (c + row.comparisons, p + row.mismatches, t + row.transients, e + row.errors)
    return totals


def _options(routes: Iterable[RouteRow]) -> dict[str, tuple[str, ...]]:
    rows = list(routes)
    return {"entity": tuple(sorted({row.entity for row in rows})), "route": tuple(sorted({row.route for row in rows}))}

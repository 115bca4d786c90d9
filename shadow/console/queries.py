"""The console's reads of the evidence store → the frozen views of
shadow/publish/views.py (the same the per-pod admin page builds from memory).

The 1 h window is read from the per-minute findings; longer ones from the hourly roll-up
the writers keep beside them (whole hours: the hour that holds the window's start counts
entirely), so a page over weeks of data aggregates hours, not minutes
(bench/console.py: a 6 h window over minutes took ~1 s with 10 million rows). Every
filter value is a bind parameter.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from shadow.publish.evidence_store import SCHEMA
from shadow.publish.views import (
    COMPARED,
    PAGE_SIZE,
    PERSISTENT,
    TREND_POINTS,
    EntityRow,
    ExampleRow,
    ExampleView,
    Filters,
    GateRecord,
    Overview,
    PathRow,
    PodRow,
    RouteRow,
    VerifyRun,
    diffs_of,
    document_lines,
    entity_totals,
    history_of,
)

if TYPE_CHECKING:
    import asyncpg

MINUTE_TABLE_SECONDS = 3600
#: a pod that has not reported for this long is shown as not reporting
POD_SILENT_SECONDS = 120.0
#: the clean window the gate asks for (shown as "3 d 4 h of 7 d"); `shadow console --window`
DEFAULT_CLEAN_WINDOW = 7 * 86400.0


@dataclass(frozen=True)
class Known:
    """What Prometheus adds (optional): known divergences per entity and their expiry."""

    divergences: Mapping[str, tuple[tuple[str, float], ...]]


def _stamp(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def _json(value: Any) -> Any:
    if value is None:
        return None
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


class _Where:
    """A WHERE clause built from the filters, values as $n parameters."""

    def __init__(self, start: Sequence[Any] = ()) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = list(start)

    def add(self, sql: str, *values: Any) -> _Where:
        for value in values:
            self.args.append(value)
            sql = sql.replace("?", f"${len(self.args)}", 1)
        self.parts.append(sql)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "true"


async def overview(pool: asyncpg.Pool, filters: Filters, now: float | None = None, known: Known | None = None,
                   clean_window: float = DEFAULT_CLEAN_WINDOW) -> Overview:
    now = time.time() if now is None else now
    since = dt.datetime.fromtimestamp(now - filters.seconds, dt.UTC)
    hourly = filters.seconds > MINUTE_TABLE_SECONDS
    table, column = ("findings_hourly", "hour") if hourly else ("findings", "minute")
    if hourly:  # whole hours: the hour that holds `since` counts entirely
        since = since.replace(minute=0, second=0, microsecond=0)
    async def on_own_connection(query: Any, *args: Any) -> Any:
        async with pool.acquire() as connection:
            return await query(connection, *args)

    # independent reads on their own connections, at once
    routes, groups, pods, verify_runs, gate, options = await asyncio.gather(
        on_own_connection(_routes, table, column, since, filters),
        on_own_connection(_path_groups, table, column, since, filters),
        on_own_connection(_pods, now), on_own_connection(_verify_runs), on_own_connection(_gate),
        on_own_connection(_options, since))
    (paths, has_next), entities = await asyncio.gather(
        _paths(pool, table, column, since, filters, routes, groups, now),
        on_own_connection(_entities, routes, now, clean_window, known, filters.entity))
    return Overview(where="store", generated_at=now, filters=filters, entities=entities, routes=routes,
                    paths=paths, has_next=has_next, pods=pods, verify_runs=verify_runs, gate=gate,
                    options=options)


async def _routes(connection: asyncpg.Connection, table: str, column: str, since: dt.datetime,
                  filters: Filters) -> tuple[RouteRow, ...]:
    where = _Where([since]).add(f"{column} >= $1").add("path = ''")
    if filters.entity:
        where.add("entity = ?", filters.entity)
    if filters.route:
        where.add("route = ?", filters.route)
    records = await connection.fetch(
        f"SELECT entity, route, outcome, sum(count)::bigint AS n FROM {SCHEMA}.{table} WHERE {where.sql} "
        "GROUP BY entity, route, outcome", *where.args)
    counts: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for record in records:
        counts[record["entity"], record["route"]][record["outcome"]] += record["n"]
    findings_only = where.sql.replace("path = ''", "path <> ''")
    latest = "max(last_minute)" if column == "hour" else "max(minute)"  # the minute, also from the roll-up
    last = await connection.fetch(
        f"SELECT entity, route, {latest} AS last FROM {SCHEMA}.{table} WHERE {findings_only} "
        "GROUP BY entity, route", *where.args)
    last_finding = {(r["entity"], r["route"]): _stamp(r["last"]) for r in last}
    rows = []
    for (entity, route), c in sorted(counts.items()):
        skipped = tuple(sorted((name.removeprefix("skipped:"), n) for name, n in c.items()
                               if name.startswith("skipped:")))
        rows.append(RouteRow(entity, route, sum(c[o] for o in COMPARED), sum(c[o] for o in PERSISTENT),
                             c["transient"], c["unstable"], c["error"], skipped, last_finding.get((entity, route))))
    return tuple(rows)


async def _path_groups(connection: asyncpg.Connection, table: str, column: str, since: dt.datetime,
                       filters: Filters) -> list[Any]:
    """Counts per (entity, path, route, outcome) in the window: one plain hash aggregate
    (the pivot, the filters on outcomes and the order are done on these few rows)."""
    where = _Where([since]).add(f"{column} >= $1").add("path <> ''").add("outcome <> 'suppressed'")
    if filters.entity:
        where.add("entity = ?", filters.entity)
    if filters.route:
        where.add("route = ?", filters.route)
    if filters.path:
        where.add("strpos(path, ?) > 0", filters.path)
    first, last = ("min(first_minute)", "max(last_minute)") if column == "hour" else ("min(minute)", "max(minute)")
    records: list[Any] = await connection.fetch(
        f"""SELECT entity, path, route, outcome, sum(count)::bigint AS n, {first} AS first_seen, {last} AS last_seen
            FROM {SCHEMA}.{table} WHERE {where.sql} GROUP BY entity, path, route, outcome""", *where.args)
    return records


def _pivot(records: Sequence[Any], filters: Filters) -> list[dict[str, Any]]:
    """Per (entity, path): counts by outcome, routes, first and last seen; filtered and
    ordered (most persistent first)."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        row = grouped.setdefault((r["entity"], r["path"]), {
            "entity": r["entity"], "path": r["path"], "counts": collections.Counter(), "routes": set(),
            "first": r["first_seen"], "last": r["last_seen"]})
        row["counts"][r["outcome"]] += r["n"]
        if r["outcome"] != "noisy":
            row["routes"].add(r["route"])
        row["first"] = min(row["first"], r["first_seen"])
        row["last"] = max(row["last"], r["last_seen"])
    rows = []
    for row in grouped.values():
        counts = row["counts"]
        row["persistent"] = sum(counts[name] for name in PERSISTENT)
        if filters.exclude_noise and not row["persistent"]:
            continue
        if filters.outcome and not counts[filters.outcome]:
            continue
        rows.append(row)
    rows.sort(key=lambda row: (-row["persistent"], -row["counts"]["transient"], row["entity"], row["path"]))
    return rows


async def _paths(pool: asyncpg.Pool, table: str, column: str, since: dt.datetime, filters: Filters,
                 routes: Sequence[RouteRow], groups: Sequence[Any], now: float) -> tuple[tuple[PathRow, ...], bool]:
    ordered = _pivot(groups, filters)
    offset = (filters.page - 1) * PAGE_SIZE
    page = ordered[offset:offset + PAGE_SIZE]
    compared = {(row.entity, row.route): row.comparisons for row in routes}
    async with pool.acquire() as connection:
        trends = await _trends(connection, table, column, since, [(r["entity"], r["path"]) for r in page], now,
                               filters)
    rows = []
    for r in page:
        path_routes = tuple(sorted(r["routes"]))
        counts = r["counts"]
        rows.append(PathRow(
            r["entity"], r["path"], r["persistent"], counts["transient"], counts["unstable"], counts["noisy"],
            path_routes, sum(compared.get((r["entity"], route), 0) for route in path_routes),
            _stamp(r["first"]), _stamp(r["last"]), trends.get((r["entity"], r["path"]), ())))
    return tuple(rows), len(ordered) > offset + PAGE_SIZE


async def _trends(connection: asyncpg.Connection, table: str, column: str, since: dt.datetime,
                  keys: list[tuple[str, str]], now: float, filters: Filters) -> dict[tuple[str, str], tuple[int, ...]]:
    """Persistent findings of each listed path in TREND_POINTS slices of the window."""
    if not keys:
        return {}
    start = since.timestamp()
    width = max(now - start, 1.0) / TREND_POINTS
    persistent = ", ".join(f"'{name}'" for name in PERSISTENT)
    route = "AND route = $6" if filters.route else ""
    records = await connection.fetch(
        f"""SELECT entity, path,
                   least({TREND_POINTS - 1}, floor((extract(epoch FROM {column}) - $4) / $5))::int AS slot,
                   sum(count)::bigint AS n
            FROM {SCHEMA}.{table}
            WHERE {column} >= $1 AND (entity, path) IN (SELECT * FROM unnest($2::text[], $3::text[]))
              AND outcome IN ({persistent}) {route}
            GROUP BY 1, 2, 3""",
        since, [k[0] for k in keys], [k[1] for k in keys], start, width, *([filters.route] if filters.route else []))
    trends: dict[tuple[str, str], list[int]] = {key: [0] * TREND_POINTS for key in keys}
    for r in records:
        slot = max(0, r["slot"])
        trends[r["entity"], r["path"]][slot] += r["n"]
    return {key: tuple(values) for key, values in trends.items()}


async def _entities(connection: asyncpg.Connection, routes: Sequence[RouteRow], now: float, clean_window: float,
                    known: Known | None, wanted: str = "") -> tuple[EntityRow, ...]:
    """Every entity with comparisons in the window, a verify run or a gate verdict."""
    totals = dict(entity_totals(routes))
    verdicts = await _latest_gate_per_entity(connection)
    layers = await _latest_layers(connection)
    for entity in (*verdicts, *layers):
        if not wanted or entity == wanted:
            totals.setdefault(entity, (0, 0, 0, 0))
    if not totals:
        return ()
    persistent = ", ".join(f"'{name}'" for name in PERSISTENT)
    history = {r["entity"]: r for r in await connection.fetch(
        f"""SELECT entity, min(first_minute) AS first,
                   max(last_minute) FILTER (WHERE outcome IN ({persistent}) AND path <> '') AS last_failure
            FROM {SCHEMA}.findings_hourly WHERE entity = ANY($1::text[]) GROUP BY entity""", list(totals))}
    rows = []
    for entity, (comparisons, failing, transient, errors) in sorted(totals.items()):
        record = history.get(entity)
        last_failure = _stamp(record["last_failure"]) if record is not None else None
        clean_since = last_failure if last_failure is not None else (_stamp(record["first"]) if record else None)
        rows.append(EntityRow(
            entity, comparisons, failing, transient, errors, last_failure=last_failure,
            clean_for=None if clean_since is None else min(now - clean_since, clean_window),
            clean_window=clean_window, gate=verdicts.get(entity),
            divergences=known.divergences.get(entity, ()) if known is not None else (),
            layers=tuple(layers.get(entity, ()))))
    return tuple(rows)


async def _latest_layers(connection: asyncpg.Connection) -> dict[str, list[tuple[str, str, float]]]:
    """Per entity, what the newest verify run of each layer that covered it said about it
    (a later run over other entities, `--entity`, leaves it as it was)."""
    records = await connection.fetch(
        f"""SELECT DISTINCT ON (covered.entity, run.layer) covered.entity, run.layer, run.at, covered.status
            FROM {SCHEMA}.verify_runs run,
                 jsonb_each_text(CASE WHEN jsonb_typeof(run.summary -> 'by_entity') = 'object'
                                      THEN run.summary -> 'by_entity' ELSE '{{}}'::jsonb END) AS covered(entity, status)
            ORDER BY covered.entity, run.layer, run.at DESC, run.id DESC""")
    out: dict[str, list[tuple[str, str, float]]] = collections.defaultdict(list)
    for record in records:
        out[record["entity"]].append((record["layer"], str(record["status"]), record["at"].timestamp()))
    return out


async def _latest_gate_per_entity(connection: asyncpg.Connection) -> dict[str, str]:
    record = await connection.fetchrow(f"SELECT verdict, report FROM {SCHEMA}.gate_verdicts ORDER BY at DESC LIMIT 1")
    if record is None:
        return {}
    report = _json(record["report"]) or {}
    out: dict[str, str] = {}
    for entity in report.get("entities") or ():
        if isinstance(entity, Mapping) and "entity" in entity:
            rows = [entity.get("total") or {}, *(entity.get("routes") or ())]
            reasons = "; ".join(dict.fromkeys(str(r) for row in rows for r in row.get("reasons", ())))
            out[str(entity["entity"])] = f"{entity.get('verdict', record['verdict'])}" + (
                f": {reasons}" if reasons else "")
    return out


async def _pods(connection: asyncpg.Connection, now: float) -> tuple[PodRow, ...]:
    records = await connection.fetch(f"SELECT * FROM {SCHEMA}.pods ORDER BY pod")
    rows = []
    for r in records:
        seen = r["last_seen"].timestamp()
        drops = _json(r["drops"]) or {}
        errors = _json(r["errors"]) or {}
        rows.append(PodRow(r["pod"], seen, r["rules_version"], r["queue_depth"],
                           tuple(sorted((k, float(v)) for k, v in drops.items() if v)),
                           tuple(sorted((k, float(v)) for k, v in errors.items() if v)),
                           now - seen <= POD_SILENT_SECONDS))
    return tuple(rows)


async def _verify_runs(connection: asyncpg.Connection, limit: int = 10) -> tuple[VerifyRun, ...]:
    runs = await connection.fetch(f"SELECT * FROM {SCHEMA}.verify_runs ORDER BY at DESC LIMIT {limit}")
    if not runs:
        return ()
    documents = collections.defaultdict(list)
    for d in await connection.fetch(
            f"""SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY run ORDER BY entity, key) AS n
                 FROM {SCHEMA}.verify_documents WHERE run = ANY($1::bigint[])) ranked WHERE n <= 50""",
            [r["id"] for r in runs]):
        documents[d["run"]].append((d["entity"], d["key"], d["kind"], d["detail"]))
    return tuple(VerifyRun(r["id"], r["at"].timestamp(), r["layer"], r["outcome"], _json(r["summary"]) or {},
                           tuple(documents[r["id"]])) for r in runs)


async def _gate(connection: asyncpg.Connection, limit: int = 10) -> tuple[GateRecord, ...]:
    records = await connection.fetch(f"SELECT * FROM {SCHEMA}.gate_verdicts ORDER BY at DESC LIMIT {limit}")
    return tuple(GateRecord(r["at"].timestamp(), r["verdict"], tuple(str(x) for x in (_json(r["reasons"]) or ())))
                 for r in records)


async def _options(connection: asyncpg.Connection, since: dt.datetime) -> dict[str, tuple[str, ...]]:
    records = await connection.fetch(
        f"SELECT DISTINCT entity, route FROM {SCHEMA}.findings_hourly "
        "WHERE hour >= date_trunc('hour', $1::timestamptz)", since)
    return {"entity": tuple(sorted({r["entity"] for r in records})),
            "route": tuple(sorted({r["route"] for r in records}))}


# ----------------------------------------------------------------------------- examples


def _example_row(r: Any) -> ExampleRow:
    return ExampleRow(id=r["id"], at=r["at"].timestamp(), entity=r["entity"], route=r["route"], key=r["key"],
                      outcome=r["outcome"], paths=tuple(r["paths"]), pod=r["pod"],
                      diffs=diffs_of(_json(r["diffs"])) if "diffs" in r else (), trace_id=r["trace_id"])


async def examples(pool: asyncpg.Pool, entity: str, path: str, limit: int = 20) -> tuple[ExampleRow, ...]:
    """The newest kept examples of one failing path."""
    async with pool.acquire() as connection:
        records = await connection.fetch(
            f"""SELECT id, at, entity, route, key, outcome, paths, pod, trace_id, diffs FROM {SCHEMA}.examples
                WHERE entity = $1 AND $2 = ANY(paths) ORDER BY at DESC LIMIT $3""", entity, path, limit)
    return tuple(_example_row(r) for r in records)


async def example(pool: asyncpg.Pool, example_id: int) -> ExampleView | None:
    async with pool.acquire() as connection:
        r = await connection.fetchrow(f"SELECT * FROM {SCHEMA}.examples WHERE id = $1", example_id)
    if r is None:
        return None
    row = _example_row(r)
    differing = [diff.at or diff.path for diff in row.diffs]
    if not differing:
        differing = [""]
    return ExampleView(row=row, source=r["source"] or "", rules_version=r["rules_version"],
                       params=_json(r["params"]) or {}, query=r["query"], rechecks=history_of(_json(r["rechecks"])),
                       control=document_lines(_json(r["control"]), differing),
                       candidate=document_lines(_json(r["candidate"]), differing))

"""Evidence store and console benchmark (issue 22).

1. Store cost per finding: the sidecar-side CPU of recording one finding (the sink's
   call into the EvidenceWriter, in memory) and of writing the batches (client side,
   asyncpg), with the store's growth in bytes, over a simulated hour at 100 findings/s
   spread over a realistic key space; extrapolated to a day.
2. Console page time with 10 million aggregate rows: rows inserted with generate_series
   (minute table; the hourly roll-up derived from it as the writers keep it), then the
   console's overview query for each time range and a few filters, timed repeatedly.

    .venv/bin/python bench/console.py [--rows 10000000] [--repeat 20]

Writes bench/results/console.json; the summary is in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from shadow.console import queries
from shadow.demo.embedded import start_postgres
from shadow.model import Comparison, FieldDiff, Outcome
from shadow.publish import evidence_store
from shadow.publish.evidence import EvidenceSettings, EvidenceWriter
from shadow.publish.views import Filters

RESULTS = Path(__file__).parent / "results" / "console.json"
ENTITIES = [f"entity{n}" for n in range(8)]
ROUTES = ["GET /api/{e}/{id}", "GET /api/{e}", "PATCH /api/{e}/{id}"]
PATHS = [f"field{n}" for n in range(20)] + [f"items[*].value{n}" for n in range(10)]
DOCUMENT = {"_id": "65a1b2c3d4e5f60718293a4b", "name": "a widget", "price": "12.50", "status": "active",
            "items": [{"sku": f"sku-{n}", "value3": n, "qty": n * 2} for n in range(8)],
            "createdAt": "2026-01-01T00:00:00Z", "owner": {"id": "u1", "email": "someone@example.com"}}


async def table_bytes(connection: Any) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS size FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shadow_evidence' AND c.relkind = 'r'")
    return {r["relname"]: r["size"] for r in rows}


async def store_cost(dsn: str, minutes: int, per_second: int) -> dict[str, Any]:
    """A simulated `minutes` of findings at `per_second`, written once per simulated second."""
    clock = [time.time() - minutes * 60]
    writer = EvidenceWriter(EvidenceSettings(dsn=dsn, pod="bench", retention_interval=1e12),
                            CollectorRegistry(), clock=lambda: clock[0])
    connection = await evidence_store.connect(dsn)
    before = await table_bytes(connection)
    record_cpu = write_cpu = 0.0
    findings = 0
    write_wall = []
    for second in range(minutes * 60):
        started = time.process_time()
        for n in range(per_second):
            index = second * per_second + n
            entity = ENTITIES[index % len(ENTITIES)]
            route = ROUTES[index % len(ROUTES)].replace("{e}", entity)
            path = PATHS[(index // 7) % len(PATHS)]
            outcome = Outcome.TRANSIENT if index % 5 == 0 else Outcome.MISMATCH
            writer.comparison(Comparison(entity, route, f"k{index % 5000}", outcome,
                                         diffs=(FieldDiff(path, path.replace("*", "2"), 1, 2),),
                                         control=DOCUMENT, candidate=DOCUMENT, at=clock[0]), None, None)
            findings += 1
        record_cpu += time.process_time() - started
        started, wall = time.process_time(), time.perf_counter()
        assert await writer.flush(), "the store refused a batch"
        write_cpu += time.process_time() - started
        write_wall.append(time.perf_counter() - wall)
        clock[0] += 1.0
    after = await table_bytes(connection)
    counts = {name: await connection.fetchval(f"SELECT count(*) FROM shadow_evidence.{name}")
              for name in ("findings", "findings_hourly", "examples")}
    await connection.close()
    await writer.close()
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    total = sum(grown.values())
    aggregates = grown.get("findings", 0) + grown.get("findings_hourly", 0)
    example_bytes = grown.get("examples", 0) / max(counts["examples"], 1)
    # examples are budgeted per (entity, route, path, outcome): two outcomes here
    path_keys = len({(e, r, p, o) for e in ENTITIES for r in ROUTES for p in PATHS for o in ("mismatch", "transient")})
    return {
        "simulated_minutes": minutes, "findings_per_second": per_second, "findings": findings,
        "record_cpu_us_per_finding": round(record_cpu / findings * 1e6, 2),
        "write_cpu_us_per_finding": round(write_cpu / findings * 1e6, 2),
        "write_wall_ms_p50": round(statistics.median(write_wall) * 1000, 2),
        "write_wall_ms_p95": round(sorted(write_wall)[int(len(write_wall) * 0.95)] * 1000, 2),
        "rows": counts, "bytes_grown": grown, "bytes_per_finding": round(total / findings, 1),
        # aggregates grow with time (rows per distinct key and minute, not per finding)
        "aggregate_growth_per_day_mb": round(aggregates * (24 * 60 / minutes) / 1e6, 1),
        # examples do not: at most examples_per_path per path and hour are written, and
        # retention keeps the newest EXAMPLES_KEPT_PER_PATH per path
        "example_bytes": round(example_bytes),
        "examples_written_per_day_mb": round(min(findings * 1440 / minutes, 24 * 5 * path_keys) * example_bytes / 1e6, 1),
        "examples_kept_mb": round(path_keys * evidence_store.EXAMPLES_KEPT_PER_PATH * example_bytes / 1e6, 1),
    }


async def load_aggregates(dsn: str, rows: int) -> dict[str, Any]:
    """`rows` findings rows over the last days (one row per key and minute), and the hourly
    roll-up the writers would have kept."""
    keys = len(ENTITIES) * len(ROUTES) * (len(PATHS) * 3 + 2)  # per minute: path rows x 3 outcomes + 2 route rows
    minutes = max(1, rows // keys)
    connection = await evidence_store.connect(dsn)  # the schema
    await connection.close()
    connection = await asyncpg.connect(dsn)  # no command timeout: the load takes minutes
    started = time.perf_counter()
    await connection.execute("TRUNCATE shadow_evidence.findings, shadow_evidence.findings_hourly")
    await connection.execute("ALTER TABLE shadow_evidence.findings SET (autovacuum_enabled = false)")
    await connection.execute(
        """INSERT INTO shadow_evidence.findings (minute, entity, route, path, outcome, count)
           SELECT date_trunc('minute', now()) - (m * interval '1 minute'), e.name, r.name, p.name, o.name,
                  1 + (m + length(p.name)) % 5
           FROM generate_series(0, $1 - 1) AS m,
                unnest($2::text[]) AS e(name), unnest($3::text[]) AS r(name),
                unnest($4::text[]) AS p(name), unnest($5::text[]) AS o(name)
           WHERE p.name <> '' OR o.name IN ('match', 'mismatch')""",
        minutes, ENTITIES, [r.replace("{e}", "x") for r in ROUTES], ["", *PATHS], ["match", "mismatch", "transient"])
    inserted = time.perf_counter() - started
    await connection.execute(
        """INSERT INTO shadow_evidence.findings_hourly (hour, entity, route, path, outcome, count, first_minute,
                                                       last_minute)
           SELECT date_trunc('hour', minute), entity, route, path, outcome, sum(count), min(minute), max(minute)
           FROM shadow_evidence.findings GROUP BY 1, 2, 3, 4, 5""")
    await connection.execute("ANALYZE shadow_evidence.findings")
    await connection.execute("ANALYZE shadow_evidence.findings_hourly")
    total = await connection.fetchval("SELECT count(*) FROM shadow_evidence.findings")
    hourly = await connection.fetchval("SELECT count(*) FROM shadow_evidence.findings_hourly")
    sizes = await table_bytes(connection)
    await connection.close()
    return {"findings_rows": total, "hourly_rows": hourly, "days": round(minutes / 1440, 2),
            "insert_seconds": round(inserted, 1), "load_seconds": round(time.perf_counter() - started, 1),
            "bytes": sizes}


async def page_times(dsn: str, repeat: int) -> dict[str, Any]:
    pool = await evidence_store.create_pool(dsn)
    cases = {
        "1h": Filters(range="1h"), "6h": Filters(range="6h"), "24h": Filters(range="24h"),
        "7d": Filters(range="7d"), "30d": Filters(range="30d"),
        "7d entity": Filters(range="7d", entity="entity3"),
        "7d path filter": Filters(range="7d", path="value"),
        "7d exclude noise, page 2": Filters(range="7d", exclude_noise=True, page=2),
        "1h route": Filters(range="1h", route="GET /api/x/{id}"),
    }
    out = {}
    for name, filters in cases.items():
        await queries.overview(pool, filters)  # warm
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await queries.overview(pool, filters)
            times.append(time.perf_counter() - started)
        times.sort()
        out[name] = {"p50_ms": round(statistics.median(times) * 1000, 1),
                     "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))] * 1000, 1)}
    await pool.close()
    return out


async def main(args: argparse.Namespace) -> None:
    server = await asyncio.to_thread(start_postgres)
    try:
        admin = await asyncpg.connect(server.dsn)
        await admin.execute("CREATE DATABASE evidence")
        await admin.close()
        dsn = server.dsn_for("evidence")
        cost = await store_cost(dsn, args.minutes, args.per_second)
        print("store cost:", json.dumps(cost, indent=1))
        loaded = await load_aggregates(dsn, args.rows)
        print("loaded:", json.dumps(loaded, indent=1))
        pages = await page_times(dsn, args.repeat)
        print("pages:", json.dumps(pages, indent=1))
    finally:
        await asyncio.to_thread(server.cleanup)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                   "store_cost": cost, "aggregates": loaded, "page_times": pages}, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=10, help="simulated minutes of findings (default 10)")
    parser.add_argument("--per-second", type=int, default=100)
    asyncio.run(main(parser.parse_args()))

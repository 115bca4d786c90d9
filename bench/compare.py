"""Benchmark: candidate documents rebuilt from PostgreSQL and compared, per second,
for single keys and for batches of 50 keys, and SQL round trips per batch; plus the
pure costs (compare() per document, RuleSet.match per request). Writes
bench/results/compare.json.

    python bench/compare.py [--scale 60] [--seconds 4]

Embedded PostgreSQL, the shipped marketplace rules, the seeded domain (no drift).
One process, one connection: documents/s of wall time here ~ per core of this process
(PostgreSQL runs on the other core). Measures only; never run as a test.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import timeit
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg

from shadow.compare import compare
from shadow.embedded import start_postgres
from shadow.marketplace import apply_schema
from shadow.marketplace.backfill import backfill
from shadow.marketplace.generate import generate
from shadow.marketplace.tojson import to_api
from shadow.model import Outcome
from shadow.rules import load_rules
from shadow.sources import PostgresSource

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "compare.json"
ENTITIES = ("payments", "purchase_requests", "disputes", "users")  # flat, 3 child tables, 2 child tables, 1


async def rate(seconds: float, batch: int, source: PostgresSource, entity: Any, controls: dict[str, Any]) -> dict[str, Any]:
    """Fetch+rebuild+compare `batch` keys at a time for `seconds`: documents/s, round trips."""
    keys = list(controls)
    today = date.today()
    documents = batches = mismatches = 0
    trips_before = source.round_trips
    cpu_before, started = time.process_time(), time.perf_counter()
    position = 0
    while time.perf_counter() - started < seconds:
        chunk = [keys[(position + offset) % len(keys)] for offset in range(batch)]
        position += batch
        candidates = await source.fetch(entity, chunk)
        for key, candidate in candidates.items():
            if compare(entity, controls[key], candidate, today).outcome is not Outcome.MATCH:
                mismatches += 1
        documents += len(candidates)
        batches += 1
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    return {"batch": batch, "documents_per_second": round(documents / wall),
            "documents_per_cpu_second": round(documents / cpu) if cpu else None,
            "round_trips_per_batch": round((source.round_trips - trips_before) / batches, 2),
            "batches": batches, "mismatches": mismatches}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    rules = load_rules(ROOT / "rules" / "marketplace")
    server = start_postgres()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(server.dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        dsn = server.dsn_for(name)
        dataset = generate(1, args.scale)
        connection = await asyncpg.connect(dsn)
        await apply_schema(connection)
        await backfill(connection, dataset, 1)
        await connection.close()
        source = await PostgresSource.create(dsn, pool_size=1)
        results: dict[str, Any] = {}
        try:
            for entity_name in ENTITIES:
                entity = rules.entities[entity_name]
                controls = {str(doc["_id"]): to_api(entity.collection, doc) for doc in dataset.collections[entity.collection]}
                cold_keys = list(controls)[:50]
                before = source.round_trips
                await source.fetch(entity, cold_keys)  # id_map cache cold: the worst case
                cold = source.round_trips - before
                per_entity = {"documents": len(controls), "round_trips_cold_batch_of_50": cold,
                              "single": await rate(args.seconds / 2, 1, source, entity, controls),
                              "batch_50": await rate(args.seconds / 2, 50, source, entity, controls)}
                sample = next(iter(controls.items()))
                candidate = (await source.fetch(entity, [sample[0]]))[sample[0]]
                loops = 2000
                per_entity["compare_us_per_document"] = round(
                    timeit.timeit(lambda: compare(entity, sample[1], candidate, date.today()), number=loops) / loops * 1e6, 1)
                per_entity["document_bytes"] = len(json.dumps(sample[1]))
                results[entity_name] = per_entity
                print(entity_name, json.dumps(per_entity))
        finally:
            await source.close()
        key = "65a1b2c3d4e5f60718293a4b"
        match_ns = {path: round(timeit.timeit(lambda p=path: rules.match("GET", p), number=100_000) / 100_000 * 1e9)
                    for path in (f"/api/payments/{key}", f"/api/users/{key}/purchase-requests", "/api/not/shadowed/at/all")}
        report = {
            "benchmark": "bench/compare.py", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {"scale": args.scale, "seconds": args.seconds, "pool_size": 1, "rules": rules.version},
            "entities": results, "rules_match_ns": match_ns,
            "notes": ["documents_per_second: fetch (asyncpg, one connection) + rebuild + compare, wall clock; "
                      "PostgreSQL runs on the other core, so this is ~ per core of the shadow process",
                      "round trips per batch = 1 main query + 1 per child table + 1 id_map query for uncached uuids "
                      "(0 once the id_map LRU is warm); a pool handed in (not created read-only) adds BEGIN/SET/COMMIT",
                      "machine is 2 cores shared with other work: ratios matter, not absolutes"],
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(match_ns))
    finally:
        server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())

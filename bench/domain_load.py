"""Benchmark: generate + backfill the marketplace domain at 100k documents (and load
Mongo, within a time budget) on embedded servers; writes bench/results/domain_load.json.

    python bench/domain_load.py [--scale 12500] [--seed 1] [--mongo-budget 60]

Measures only; never run as a test.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from shadow.demo.embedded import start_mongo, start_postgres
from shadow.demo.marketplace import apply_schema
from shadow.demo.marketplace.backfill import backfill
from shadow.demo.marketplace.generate import generate

RESULTS = Path(__file__).parent / "results" / "domain_load.json"


async def measure(scale: int, seed: int, mongo_budget: float) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "seed": seed}
    started = time.perf_counter()
    dataset = generate(seed, scale)
    result["generate_seconds"] = round(time.perf_counter() - started, 3)
    result["documents"] = dataset.count()

    pg = start_postgres()
    try:
        conn = await asyncpg.connect(pg.dsn)
        try:
            await apply_schema(conn)
            started = time.perf_counter()
            await backfill(conn, dataset, seed)
            result["backfill_seconds"] = round(time.perf_counter() - started, 3)
            tables = await conn.fetch("SELECT relname, n_live_tup FROM pg_stat_user_tables")
            result["pg_rows"] = sum(r["n_live_tup"] for r in tables)
        finally:
            await conn.close()
    finally:
        pg.cleanup()
    result["backfill_docs_per_second"] = round(result["documents"] / result["backfill_seconds"])

    mongo = start_mongo("secantus")
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo.uri, tz_aware=True)
    loaded = 0
    try:
        started = time.perf_counter()
        for name, docs in dataset.collections.items():
            for start in range(0, len(docs), 1000):
                if time.perf_counter() - started > mongo_budget:
                    break
                await client["bench"][name].insert_many([dict(d) for d in docs[start:start + 1000]], ordered=False)
                loaded += len(docs[start:start + 1000])
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
        mongo.stop()
    result.update({"mongo_server": "secantusdb", "mongo_docs_loaded": loaded,
                   "mongo_load_seconds": round(elapsed, 3), "mongo_docs_per_second": round(loaded / elapsed),
                   "mongo_load_complete": loaded == result["documents"]})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=12500, help="documents per collection (8 collections)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mongo-budget", type=float, default=60.0, help="seconds for the Mongo load")
    args = parser.parse_args()
    result = asyncio.run(measure(args.scale, args.seed, args.mongo_budget))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "when": datetime.now(UTC).isoformat(timespec="seconds"),
                         "note": "2 shared cores, other jobs running; ratios matter, not absolutes"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

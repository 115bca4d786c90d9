"""`shadow verify` scan-path cost per document, per stage, on the marketplace payments
(embedded PostgreSQL + SecantusDB): Mongo page read, stored -> API shape, PostgreSQL
fetch + rebuild (store read included), canonicalize + compare; then the whole docs
layer, counts and sums of one entity. Usage: python bench/verify.py [SCALE...] (default 1000 4000:
the docs layer's traced memory peak at two sizes shows whether it is flat)"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

import asyncpg
from pymongo import AsyncMongoClient

from shadow.compare.diff import compare
from shadow.demo.embedded import start_mongo, start_postgres
from shadow.demo.marketplace.cli import load_domain
from shadow.replay.sources.apijson import api_document
from shadow.replay.sources.postgres import PostgresSource
from shadow.rules import load_rules
from shadow.verify.counts import run_counts
from shadow.verify.reconcile import run_docs
from shadow.verify.scope import KeyRange
from shadow.verify.sums import run_sums

ROOT = Path(__file__).resolve().parents[1]


async def main(scales: list[int]) -> dict[str, object]:
    pg_server, mongo_server = start_postgres(), start_mongo("secantus")
    try:
        runs = [await one_scale(pg_server, mongo_server, scale) for scale in scales]
    finally:
        mongo_server.stop()
        pg_server.cleanup()
    return {"entity": "payments", "runs": runs}


async def one_scale(pg_server: object, mongo_server: object, scale: int) -> dict[str, object]:
    if True:
        admin = await asyncpg.connect(pg_server.dsn)  # type: ignore[attr-defined]
        await admin.execute(f'CREATE DATABASE "bench_verify_{scale}"')
        await admin.close()
        dsn = pg_server.dsn_for(f"bench_verify_{scale}")  # type: ignore[attr-defined]
        uri = mongo_server.uri  # type: ignore[attr-defined]
        await load_domain(dsn, uri, f"bench{scale}", scale=scale, seed=3, drift=False)
        entity = load_rules(ROOT / "rules" / "marketplace").entities["payments"]
        client: AsyncMongoClient = AsyncMongoClient(uri, tz_aware=True)
        db = client[f"bench{scale}"]
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
        source = PostgresSource(pool, statement_timeout=60)
        stages = dict.fromkeys(("mongo_read", "api_shape", "pg_fetch_rebuild", "canonical_compare"), 0.0)
        started = time.perf_counter()
        stored = [doc async for doc in db[entity.collection].find({}).sort("_id", 1)]
        stages["mongo_read"] = time.perf_counter() - started
        started = time.perf_counter()
        controls = {str(doc["_id"]): api_document(entity, doc) for doc in stored}
        stages["api_shape"] = time.perf_counter() - started
        keys = list(controls)
        started = time.perf_counter()
        candidates: dict[str, object] = {}
        for index in range(0, len(keys), 500):
            candidates.update(await source.fetch(entity, keys[index:index + 500]))
        stages["pg_fetch_rebuild"] = time.perf_counter() - started
        started = time.perf_counter()
        today = date.today()
        outcomes = [compare(entity, controls[key], candidates[key], today).outcome.value for key in keys]
        stages["canonical_compare"] = time.perf_counter() - started
        count = len(keys)
        cpu_before = time.process_time()
        started = time.perf_counter()
        docs = await run_docs(entity, db, source, KeyRange())
        docs_seconds, docs_cpu = time.perf_counter() - started, time.process_time() - cpu_before
        del stored, controls, candidates  # memory of the docs layer alone, below
        tracemalloc.start()
        await run_docs(entity, db, source, KeyRange())
        docs_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        started = time.perf_counter()
        counts = await run_counts(entity, db, pool, KeyRange())
        counts_seconds = time.perf_counter() - started
        started = time.perf_counter()
        sums = await run_sums(entity, db, pool, KeyRange())
        sums_seconds = time.perf_counter() - started
        await pool.close()
        await client.close()
        return {
            "scale": scale, "documents": count, "all_match": set(outcomes) == {"match"},
            "us_per_doc": {stage: round(seconds / count * 1e6, 1) for stage, seconds in stages.items()},
            "our_cpu_us_per_doc": round((stages["api_shape"] + stages["canonical_compare"]) / count * 1e6, 1),
            "docs_layer": {"seconds": round(docs_seconds, 2), "docs_per_s": round(count / docs_seconds),
                           "process_cpu_s": round(docs_cpu, 2), "process_cpu_us_per_doc": round(docs_cpu / count * 1e6, 1),
                           "status": docs.status, "traced_peak_mb": round(docs_peak / 2**20, 2)},
            "counts_seconds": round(counts_seconds, 2), "counts_status": counts.status,
            "sums_seconds": round(sums_seconds, 2), "sums_status": sums.status,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }


if __name__ == "__main__":
    result = asyncio.run(main([int(arg) for arg in sys.argv[1:]] or [1000, 4000]))
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "verify.json").write_text(json.dumps(result, indent=2) + "\n")

"""`shadow verify` scan-path cost per document, per stage, on the marketplace payments
(embedded PostgreSQL + SecantusDB): Mongo page read, stored -> API shape, PostgreSQL
fetch + rebuild (store read included), canonicalize + compare; then the whole docs
layer, counts and sums of one entity. Usage: python bench/verify.py [SCALE]"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
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


async def main(scale: int) -> dict[str, object]:
    pg_server, mongo_server = start_postgres(), start_mongo("secantus")
    try:
        admin = await asyncpg.connect(pg_server.dsn)
        await admin.execute('CREATE DATABASE "bench_verify"')
        await admin.close()
        dsn = pg_server.dsn_for("bench_verify")
        await load_domain(dsn, mongo_server.uri, "bench", scale=scale, seed=3, drift=False)
        entity = load_rules(ROOT / "rules" / "marketplace").entities["payments"]
        client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
        db = client["bench"]
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
                           "process_cpu_s": round(docs_cpu, 2), "status": docs.status},
            "counts_seconds": round(counts_seconds, 2), "counts_status": counts.status,
            "sums_seconds": round(sums_seconds, 2), "sums_status": sums.status,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    finally:
        mongo_server.stop()
        pg_server.cleanup()


if __name__ == "__main__":
    result = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "verify.json").write_text(json.dumps(result, indent=2) + "\n")

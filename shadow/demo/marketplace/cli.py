"""`shadow seed`: load the marketplace reference domain into MongoDB and PostgreSQL.

`load_domain(...)` is the one routine the CLI, the demo and the test fixtures share:
generate → PG schema + backfill (through id_map) → Mongo load → optional drift.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from shadow.demo.marketplace import apply_schema
from shadow.demo.marketplace.articledata import Articles, generate_articles, load_articles
from shadow.demo.marketplace.backfill import IdMap, backfill
from shadow.demo.marketplace.drift import PlantedDrift, plant
from shadow.demo.marketplace.generate import Dataset, generate, load_mongo


@dataclass(frozen=True)
class LoadedDomain:
    """What `load_domain` wrote, and how long each step took (seconds)."""

    dataset: Dataset
    id_map: IdMap
    drifts: tuple[PlantedDrift, ...]
    timings: dict[str, float]
    articles: Articles | None = None  # the articles family (articledata.py), when asked for


async def load_domain(pg_dsn: str, mongo_uri: str, mongo_db: str, *, scale: int, seed: int,
                      drift: bool, schema: bool = True, articles: bool = False) -> LoadedDomain:
    """Fill an empty PG database and Mongo database with the same seeded marketplace
    (and, with `articles`, the articles family of the sample API's /api/articles routes)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    dataset = generate(seed, scale)
    timings["generate"] = time.perf_counter() - started
    conn = await asyncpg.connect(pg_dsn)
    try:
        if schema:
            await apply_schema(conn)
        started = time.perf_counter()
        id_map = await backfill(conn, dataset, seed)
        timings["backfill"] = time.perf_counter() - started
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, tz_aware=True)
        try:
            started = time.perf_counter()
            await load_mongo(client[mongo_db], dataset)
            timings["mongo_load"] = time.perf_counter() - started
            family = None
            if articles:
                family = generate_articles(dataset)
                await load_articles(conn, client[mongo_db], family, id_map.new_ids)
        finally:
            await client.close()
        drifts: tuple[PlantedDrift, ...] = ()
        if drift:
            drifts = await plant(conn, dataset, seed)
    finally:
        await conn.close()
    return LoadedDomain(dataset, id_map, drifts, timings, family)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg", required=True, help="PostgreSQL DSN of an empty database")
    parser.add_argument("--mongo", required=True, help="Mongo URL")
    parser.add_argument("--db", default="marketplace", help="Mongo database (default: marketplace)")
    parser.add_argument("--scale", type=int, default=100, help="documents per collection (default: 100)")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (default: 1)")
    parser.add_argument("--drift", action="store_true", help="plant one divergence of each kind in PostgreSQL")
    parser.add_argument("--no-schema", action="store_true", help="the PG schema already exists")
    parser.add_argument("--articles", action="store_true",
                        help="also load the articles family (/api/articles...; rules/examples/articles)")


def run(args: argparse.Namespace) -> int:
    if args.scale < 1:
        print(f"shadow seed: --scale must be >= 1, got {args.scale}")
        return 2
    loaded = asyncio.run(load_domain(args.pg, args.mongo, args.db, scale=args.scale, seed=args.seed,
                                     drift=args.drift, schema=not args.no_schema, articles=args.articles))
    for name, docs in loaded.dataset.collections.items():
        print(f"{name:20} {len(docs):>8} documents")
    if loaded.articles is not None:
        for name in ("writers", "articles", "follows"):
            print(f"{name:20} {len(getattr(loaded.articles, name)):>8} documents")
    print("timings: " + ", ".join(f"{step} {seconds:.2f}s" for step, seconds in loaded.timings.items()))
    for planted in loaded.drifts:
        flag = "divergent" if planted.divergent else "NOT divergent"
        print(f"drift {planted.kind:24} {planted.collection}/{planted.legacy_id} {planted.path or '(document)'} "
              f"[{flag}]")
    return 0

"""`shadow verify --rules DIR --pg DSN --mongo URL [--mongo-db NAME] [--entity E…]
[--layer counts|sums|docs|all] [--partition I/N] [--resume FILE] [--max-rate DOCS_S]
[--json] [--push URL]`

Exit 0: every layer clean · 1: differences found · 2: cannot evaluate (a store
unreachable, a bad flag, an entity asked for by name whose rules cannot be verified)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

LAYER_CHOICES = ("counts", "sums", "docs", "all")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--rules", default=env("SHADOW_RULES"), help="rules directory (env SHADOW_RULES)")
    parser.add_argument("--pg", default=env("SHADOW_PG"), help="PostgreSQL DSN, read-only is enough (env SHADOW_PG)")
    parser.add_argument("--mongo", default=env("SHADOW_MONGO"), help="MongoDB URL (env SHADOW_MONGO)")
    parser.add_argument("--mongo-db", "--db", dest="mongo_db", default=env("SHADOW_MONGO_DB"),
                        help="Mongo database (env SHADOW_MONGO_DB; no default)")
    parser.add_argument("--entity", action="append", default=[], help="entity to verify (repeat; default all)")
    parser.add_argument("--layer", default="all", help="counts | sums | docs | all (default all)")
    parser.add_argument("--partition", default=env("SHADOW_VERIFY_PARTITION", "0/1"),
                        help="I/N: slice I (0-based, a Job's completion index) of N ObjectId ranges")
    parser.add_argument("--resume", default=None, help="checkpoint file: skip buckets it records as clean")
    parser.add_argument("--max-rate", dest="max_rate", default=None, help="documents per second at most (docs layer)")
    parser.add_argument("--page", type=int, default=500, help="documents per page (default 500)")
    parser.add_argument("--criteria", default=env("SHADOW_GATE_CRITERIA"),
                        help="gate criteria file: its dualwrite_gaps table labels differences")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--push", default=env("SHADOW_VERIFY_PUSH"), help="Prometheus Pushgateway URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per store query (default 60)")
    parser.add_argument("--evidence", default=env("SHADOW_EVIDENCE"), help="evidence store DSN: record this run")


def run(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except ValueError as error:
        print(f"shadow verify: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, *options))


def _options(args: argparse.Namespace) -> tuple[Any, tuple[str, ...], float | None]:
    from shadow.verify.scope import parse_partition

    for flag in ("rules", "pg", "mongo", "mongo_db"):
        if not getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} is required")
    if args.layer not in LAYER_CHOICES:
        raise ValueError(f"--layer must be one of {', '.join(LAYER_CHOICES)}, got {args.layer!r:.40}")
    layers = ("counts", "sums", "docs") if args.layer == "all" else (args.layer,)
    max_rate = None
    if args.max_rate is not None:
        try:
            max_rate = float(args.max_rate)
        except ValueError:
            raise ValueError(f"--max-rate must be a number of documents per second, "
                             f"got {args.max_rate!r:.40}") from None
        if not (0 < max_rate < 1e9):
            raise ValueError(f"--max-rate must be > 0, got {args.max_rate!r:.40}")
    if not (1 <= args.page <= 10_000):
        raise ValueError(f"--page must be 1..10000, got {args.page}")
    return parse_partition(args.partition), layers, max_rate


async def _run(args: argparse.Namespace, partition: Any, layers: tuple[str, ...], max_rate: float | None) -> int:
    from shadow.rules import RulesError, load_rules
    from shadow.verify.buckets import ResumeFile
    from shadow.verify.report import push
    from shadow.verify.scope import BadFlag

    try:
        rules = load_rules(args.rules)
    except RulesError as error:
        print(error, file=sys.stderr)
        return 2
    unknown = [name for name in args.entity if name not in rules.entities]
    if unknown:
        print(f"shadow verify: unknown entity {unknown[0]!r}; the rules have: {', '.join(rules.entities)}",
              file=sys.stderr)
        return 2
    try:
        resume = ResumeFile.open(args.resume, rules.version)
    except BadFlag as error:
        print(f"shadow verify: {error}", file=sys.stderr)
        return 2
    report = await verify_run(rules, args.pg, args.mongo, args.mongo_db, entities=args.entity, layers=layers,
                              partition=partition, max_rate=max_rate, resume=resume, criteria=args.criteria,
                              page=args.page, timeout=args.timeout)
    named = set(args.entity)
    if args.json:
        print(json.dumps(report.as_json(named), default=str))
    else:
        print(report.text())
    if getattr(args, "evidence", None):
        from shadow.publish.evidence_audit import record_verify_or_warn
        if not await record_verify_or_warn(args.evidence, report.as_json(named)):
            return 2
    if args.push:
        try:
            push(report, args.push)
        except Exception as error:
            print(f"shadow verify: push to {args.push} failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
    return int(report.exit_code(named))


async def verify_run(rules: Any, pg: str, mongo_url: str, mongo_db: str, *, entities: list[str] | tuple[str, ...] = (),
                     layers: tuple[str, ...] = ("counts", "sums", "docs"), partition: Any = None,
                     max_rate: float | None = None, resume: Any = None, criteria: str | None = None,
                     page: int = 500, timeout: float = 60.0, progress: Any = None) -> Any:
    """One verify run over loaded rules (the CLI's and the demo's): a RunReport."""
    import asyncpg
    from pymongo import AsyncMongoClient

    from shadow.replay.sources.postgres import PostgresSource
    from shadow.verify.gaps import GapConfigError, open_gaps
    from shadow.verify.progress import Progress
    from shadow.verify.report import EntityReport, RunReport
    from shadow.verify.scope import BadFlag, Partition, verifiable

    partition = partition or Partition()
    report = RunReport(rules.version, str(partition), time.time())
    chosen = [rules.entities[name] for name in (entities or rules.entities)]
    timeout_ms = str(int(timeout * 1000))
    mongo: Any = AsyncMongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=int(timeout * 1000),
                                  timeoutMS=int(timeout * 1000))
    pool = None
    try:
        try:
            pool = await asyncpg.create_pool(
                pg, min_size=1, max_size=3, command_timeout=timeout + 1,
                server_settings={"default_transaction_read_only": "on", "statement_timeout": timeout_ms,
                                 "application_name": "shadow-verify"})
            gaps, open_counts = await open_gaps(criteria, pool)
            await mongo.admin.command("ping")
        except (GapConfigError, BadFlag) as error:
            report.error = str(error)
        except Exception as error:
            report.error = f"store unreachable: {type(error).__name__}: {error}"
        if not report.error:
            assert pool is not None
            source = PostgresSource(pool, statement_timeout=timeout, read_only_session=True)
            for entity in chosen:
                reason = verifiable(entity)
                if reason is not None:
                    report.entities.append(EntityReport(entity.name, False, reason))
                    continue
                report.entities.append(await _entity(entity, mongo[mongo_db], pool, source, partition, layers,
                                                     page, max_rate, resume, gaps, progress or Progress()))
                if open_counts is not None:
                    report.entities[-1].open_gaps = open_counts.get(entity.collection, 0)
    finally:
        await mongo.close()
        if pool is not None:
            await pool.close()
    report.finished = time.time()
    return report


async def _entity(entity: Any, mongo_db: Any, pool: Any, source: Any, partition: Any, layers: tuple[str, ...],
                  page: int, max_rate: float | None, resume: Any, gaps: Any, progress: Any) -> Any:
    from shadow.verify.counts import run_counts
    from shadow.verify.model import LayerResult
    from shadow.verify.reconcile import run_docs
    from shadow.verify.report import EntityReport
    from shadow.verify.scope import KeyRange, partition_range
    from shadow.verify.sums import run_sums

    result = EntityReport(entity.name)
    key_range: KeyRange | None
    try:
        collection = mongo_db[entity.collection]
        first = await collection.find_one({}, {"_id": 1}, sort=[("_id", 1)])
        last = await collection.find_one({}, {"_id": 1}, sort=[("_id", -1)])
        key_range = partition_range(partition, str(first["_id"]) if first else None, str(last["_id"]) if last else None)
        if entity.key_type != "objectid" and partition.count > 1:
            key_range = None if partition.index else partition_range(partition, None, None)
    except Exception as error:
        for layer in layers:
            result.layers[layer] = LayerResult(layer, "error", error=f"{type(error).__name__}: {error}")  # type: ignore[arg-type]
        return result
    for layer in layers:
        if key_range is None:  # string keys are not split: slice 0 takes them all
            result.layers[layer] = LayerResult(layer, "skipped")  # type: ignore[arg-type]
            continue
        try:
            if layer == "counts":
                result.layers[layer] = await run_counts(entity, mongo_db, pool, key_range)
            elif layer == "sums":
                result.layers[layer] = await run_sums(entity, mongo_db, pool, key_range)
            else:
                from shadow.verify.scope import mongo_filter
                total = await mongo_db[entity.collection].count_documents(mongo_filter(entity, key_range))
                progress.begin(entity.name, total)
                result.layers[layer] = await run_docs(entity, mongo_db, source, key_range, page=page,
                                                      max_rate=max_rate, resume=resume, gaps=gaps,
                                                      on_page=progress.advance)
                progress.end()
        except Exception as error:
            result.layers[layer] = LayerResult(layer, "error", error=f"{type(error).__name__}: {error}")  # type: ignore[arg-type]
    return result

"""`shadow verify --rules DIR --pg DSN (--mongo URL --mongo-db NAME | --mongo-dump PATH)
[--entity E…] [--layer counts|sums|docs|all] [--partition I/N] [--resume FILE]
[--max-rate DOCS_S] [--normalizer-modules M] [--json] [--push URL]`

Exit 0: every layer clean · 1: differences found · 2: cannot evaluate (a store
unreachable, a database or collection that does not exist, a bad flag, an entity asked
for by name whose rules cannot be verified). `produce_report` is the one place a run's
report is made."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from shadow.policy import RulesPolicy
    from shadow.replay.sources.postgres import PostgresSource
    from shadow.rules.load import RuleSet
    from shadow.rules.spec import Entity
    from shadow.verify.buckets import ResumeFile
    from shadow.verify.gaps import Lookup
    from shadow.verify.mongoside import MongoSide
    from shadow.verify.progress import Progress
    from shadow.verify.report import EntityReport, RunReport
    from shadow.verify.scope import Partition

LAYER_CHOICES = ("counts", "sums", "docs", "all")


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--rules", default=env("SHADOW_RULES"), help="rules directory (env SHADOW_RULES)")
    parser.add_argument("--pg", default=env("SHADOW_PG"), help="PostgreSQL DSN, read-only is enough (env SHADOW_PG)")
    parser.add_argument("--mongo", default=env("SHADOW_MONGO"), help="MongoDB URL (env SHADOW_MONGO)")
    parser.add_argument("--mongo-db", "--db", dest="mongo_db", default=env("SHADOW_MONGO_DB"),
                        help="Mongo database (env SHADOW_MONGO_DB; no default; with --mongo-dump: the database "
                             "inside the dump, optional when it holds one)")
    parser.add_argument("--mongo-dump", dest="mongo_dump", default=None, metavar="PATH",
                        help="read a mongodump snapshot instead of a live Mongo: a dump directory "
                             "(<db>/<collection>.bson[.gz]) or an --archive file (gzip or not)")
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
    from shadow.policy import add_policy_arguments

    add_policy_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except ValueError as error:
        print(f"shadow verify: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, *options))


def _options(args: argparse.Namespace) -> tuple[Any, tuple[str, ...], float | None, Any]:
    from shadow.policy import policy_from_args
    from shadow.verify.scope import parse_partition

    required = ("rules", "pg") if args.mongo_dump else ("rules", "pg", "mongo", "mongo_db")
    for flag in required:
        if not getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} is required"
                             + (" (or --mongo-dump PATH)" if flag.startswith("mongo") else ""))

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
    return parse_partition(args.partition), layers, max_rate, policy_from_args(args)


async def _run(args: argparse.Namespace, partition: Partition, layers: tuple[str, ...], max_rate: float | None,
               policy: RulesPolicy) -> int:
    from shadow.verify.report import push

    report = await produce_report(args, partition, layers, max_rate, policy)
    if report is None:
        return 2
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


async def produce_report(args: argparse.Namespace, partition: Partition, layers: tuple[str, ...],
                         max_rate: float | None, policy: RulesPolicy) -> RunReport | None:
    """The one place a command-line run's RunReport is made (None: refused, the reason
    on stderr); whatever records or publishes runs hooks in after it."""
    from shadow.rules import RulesError, load_rules
    from shadow.verify.buckets import ResumeFile
    from shadow.verify.scope import BadFlag

    try:
        rules = load_rules(args.rules, policy)
    except RulesError as error:
        print(error, file=sys.stderr)
        return None
    unknown = [name for name in args.entity if name not in rules.entities]
    if unknown:
        print(f"shadow verify: unknown entity {unknown[0]!r}; the rules have: {', '.join(rules.entities)}",
              file=sys.stderr)
        return None
    try:
        resume = ResumeFile.open(args.resume, rules.version)
    except BadFlag as error:
        print(f"shadow verify: {error}", file=sys.stderr)
        return None
    return await verify_run(rules, args.pg, args.mongo, args.mongo_db, entities=args.entity, layers=layers,
                            partition=partition, max_rate=max_rate, resume=resume, criteria=args.criteria,
                            page=args.page, timeout=args.timeout, mongo_dump=args.mongo_dump)


async def verify_run(rules: RuleSet, pg: str, mongo_url: str | None, mongo_db: str | None, *,
                     entities: list[str] | tuple[str, ...] = (),
                     layers: tuple[str, ...] = ("counts", "sums", "docs"), partition: Partition | None = None,
                     max_rate: float | None = None, resume: ResumeFile | None = None, criteria: str | None = None,
                     page: int = 500, timeout: float = 60.0, progress: Progress | None = None,
                     mongo_dump: str | None = None) -> RunReport:
    """One verify run over loaded rules (the CLI's and the demo's): a RunReport. The Mongo
    side is the live server (`mongo_url`, `mongo_db`) or a mongodump snapshot (`mongo_dump`)."""
    import asyncpg

    from shadow.replay.sources.postgres import PostgresSource
    from shadow.verify.gaps import GapConfigError, open_gaps
    from shadow.verify.progress import Progress
    from shadow.verify.report import EntityReport, RunReport
    from shadow.verify.scope import BadFlag, Partition, verifiable

    partition = partition or Partition()
    report = RunReport(rules.version, str(partition), time.time())
    chosen = [rules.entities[name] for name in (entities or rules.entities)]
    timeout_ms = str(int(timeout * 1000))
    client: Any = None
    mongo: MongoSide | None = None
    pool = None
    try:
        try:
            if mongo_dump is not None:
                from shadow.verify.dump import DumpMongo

                mongo = DumpMongo.open(mongo_dump, mongo_db)
                report.source = f"mongodump {mongo.name}"
            else:
                from pymongo import AsyncMongoClient

                from shadow.verify.mongoside import LiveMongo

                client = AsyncMongoClient(mongo_url, tz_aware=True, tzinfo=UTC,  # as the dump reader's
                                          serverSelectionTimeoutMS=int(timeout * 1000),
                                          timeoutMS=int(timeout * 1000))
                await client.admin.command("ping")
                mongo = LiveMongo(client, mongo_db or "")
            pool = await asyncpg.create_pool(
                pg, min_size=1, max_size=3, command_timeout=timeout + 1,
                server_settings={"default_transaction_read_only": "on", "statement_timeout": timeout_ms,
                                 "application_name": "shadow-verify"})
            gaps, open_counts = await open_gaps(criteria, pool)
            missing = await mongo.problems(entity.collection for entity in chosen)
        except (GapConfigError, BadFlag) as error:
            report.error = str(error)
        except Exception as error:
            report.error = f"store unreachable: {type(error).__name__}: {error}"
        if not report.error and "" in missing:
            report.error = missing[""]
        if not report.error:
            assert pool is not None and mongo is not None
            source = PostgresSource(pool, statement_timeout=timeout, read_only_session=True)
            for entity in chosen:
                reason = verifiable(entity)
                if reason is not None:
                    report.entities.append(EntityReport(entity.name, False, reason))
                    continue
                report.entities.append(await _entity(entity, mongo, pool, source, partition, layers,
                                                     page, max_rate, resume, gaps, progress or Progress(),
                                                     missing.get(entity.collection)))
                if open_counts is not None:
                    report.entities[-1].open_gaps = open_counts.get(entity.collection, 0)
    finally:
        if client is not None:
            await client.close()
        if mongo is not None and hasattr(mongo, "close"):
            mongo.close()
        if pool is not None:
            await pool.close()
    report.finished = time.time()
    return report


async def _entity(entity: Entity, mongo: MongoSide, pool: asyncpg.Pool, source: PostgresSource, partition: Partition,
                  layers: tuple[str, ...], page: int, max_rate: float | None, resume: ResumeFile | None,
                  gaps: Lookup | None, progress: Progress, problem: str | None) -> EntityReport:
    from shadow.verify.counts import run_counts
    from shadow.verify.model import Layer, LayerResult
    from shadow.verify.reconcile import run_docs
    from shadow.verify.report import EntityReport
    from shadow.verify.scope import KeyRange, mongo_filter, partition_range
    from shadow.verify.sums import run_sums

    result = EntityReport(entity.name)
    names: dict[str, Layer] = {"counts": "counts", "sums": "sums", "docs": "docs"}
    key_range: KeyRange | None
    try:
        if problem:
            raise LookupError(problem)
        first, last = await mongo.key_bounds(entity.collection)
        key_range = partition_range(partition, first, last)
        if entity.key_type != "objectid" and partition.count > 1:
            key_range = None if partition.index else partition_range(partition, None, None)
    except Exception as error:
        for layer in layers:
            result.layers[layer] = LayerResult(names[layer], "error", error=f"{type(error).__name__}: {error}")
        return result
    for layer in layers:
        if key_range is None:  # string keys are not split: slice 0 takes them all
            result.layers[layer] = LayerResult(names[layer], "skipped")
            continue
        try:
            if layer == "counts":
                result.layers[layer] = await run_counts(entity, mongo, pool, key_range)
            elif layer == "sums":
                result.layers[layer] = await run_sums(entity, mongo, pool, key_range)
            else:
                progress.begin(entity.name, await mongo.count(entity.collection, mongo_filter(entity, key_range)))
                result.layers[layer] = await run_docs(entity, mongo, source, key_range, page=page,
                                                      max_rate=max_rate, resume=resume, gaps=gaps,
                                                      on_page=progress.advance, on_bucket=progress.bucket_done)
                progress.end()
        except Exception as error:
            result.layers[layer] = LayerResult(names[layer], "error", error=f"{type(error).__name__}: {error}")
    return result

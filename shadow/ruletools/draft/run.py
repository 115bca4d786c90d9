"""`shadow rules draft --pg DSN --mongo URL --mongo-db DB -o DIR [--answers DIR]
[--entity NAME]… [--sample N] [--check]`.

Exit 0: draft written (and, with --check, every sampled key matched) · 1: --check found
differences, or the draft does not load · 2: a store unreachable or bad arguments."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

MAX_SAMPLE = 10_000


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--pg", metavar="DSN", default=env("SHADOW_PG"), required=env("SHADOW_PG") is None,
                        help="PostgreSQL DSN (env SHADOW_PG); only the catalog, id_map and key probes are read")
    parser.add_argument("--mongo", metavar="URL", default=env("SHADOW_MONGO"), required=env("SHADOW_MONGO") is None,
                        help="MongoDB URL (env SHADOW_MONGO)")
    parser.add_argument("--mongo-db", "--db", dest="db", metavar="DB", default=env("SHADOW_MONGO_DB"),
                        required=env("SHADOW_MONGO_DB") is None, help="Mongo database (env SHADOW_MONGO_DB)")
    parser.add_argument("-o", "--output", metavar="DIR", required=True, help="directory the rule files are written to")
    parser.add_argument("--answers", metavar="DIR", help="recorded API answers (one JSON file each) -> routes")
    parser.add_argument("--entity", action="append", metavar="NAME",
                        help="draft only this collection (or table); repeat for several")
    parser.add_argument("--sample", type=int, default=200, metavar="N",
                        help=f"documents sampled per collection ($sample; default 200, at most {MAX_SAMPLE})")
    parser.add_argument("--check", action="store_true",
                        help="then run the draft over the sampled keys and print the paths that still differ")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per server call (default 5)")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.sample <= MAX_SAMPLE:
        print(f"shadow rules draft: --sample must be 1..{MAX_SAMPLE}, got {args.sample}", file=sys.stderr)
        return 2
    if args.answers and not Path(args.answers).is_dir():
        print(f"shadow rules draft: --answers {args.answers!r} is not a directory", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


async def _read_postgres(args: argparse.Namespace) -> Any:
    import asyncpg

    return await asyncpg.connect(args.pg, timeout=args.timeout, command_timeout=args.timeout,
                                 server_settings={"default_transaction_read_only": "on"})


async def _run(args: argparse.Namespace) -> int:
    from pymongo import AsyncMongoClient

    from shadow.ruletools.draft.catalog import read_catalog
    from shadow.ruletools.draft.names import squashed
    from shadow.ruletools.draft.probe import probe
    from shadow.ruletools.draft.propose import propose
    from shadow.ruletools.draft.sample import list_collections, sample_collection

    try:
        connection = await _read_postgres(args)
    except Exception as error:
        print(f"shadow rules draft: cannot reach PostgreSQL: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    millis = int(args.timeout * 1000)
    client: AsyncMongoClient[Any] = AsyncMongoClient(args.mongo, tz_aware=True, serverSelectionTimeoutMS=millis,
                                                     timeoutMS=millis)
    try:
        catalog = await read_catalog(connection)
        database = client[args.db]
        try:
            names = await list_collections(database)
        except Exception as error:
            print(f"shadow rules draft: cannot reach MongoDB: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
        if args.entity:
            wanted = {squashed(name) for name in args.entity}
            names = [name for name in names if squashed(name) in wanted or name in args.entity]
            if not names:
                print(f"shadow rules draft: no collection named like {', '.join(args.entity)}", file=sys.stderr)
                return 2
        shapes = [await sample_collection(database, name, args.sample) for name in names]
        probes = await probe(connection, catalog, shapes)
        draft = propose(catalog, shapes, probes)
        if args.answers:
            from shadow.ruletools.draft.answers import add_routes, read_answers

            answers, problems = read_answers(Path(args.answers))
            draft = await add_routes(draft, answers, problems, connection, catalog)
    except Exception as error:
        print(f"shadow rules draft: cannot read the stores: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    finally:
        await connection.close()
        await client.close()
    from shadow.ruletools.draft.emit import write_draft

    out = Path(args.output)
    written = write_draft(draft, out, {shape.name: shape.documents for shape in shapes})
    others = sorted(path.name for path in out.glob("*.yaml") if path not in written)
    if others:  # never deleted: they may be the user's; but --check and the proxy would load them too
        print(f"warning: {out} also holds {', '.join(others)}, not written by this draft", file=sys.stderr)
    fields = sum(len(entity.fields) for entity in draft.entities)
    todos = len(draft.todos) + sum(len(entity.todos) for entity in draft.entities)
    print(f"{out}: {len(draft.entities)} entities, {fields} top-level fields, {todos} TODO(s) "
          f"({len(written)} files; TODO.txt lists what is unmapped)")
    if not args.check:
        return 0
    return await _check(args, out, {shape.name: shape.keys for shape in shapes})


async def _check(args: argparse.Namespace, out: Path, keys: dict[str, tuple[str, ...]]) -> int:
    from shadow.rules import RulesError
    from shadow.ruletools.draft.check import report, run_check

    try:
        results = await run_check(str(out), args.pg, args.mongo, args.db, keys, args.timeout)
    except RulesError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print("the draft does not load: fix the lines above first", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"shadow rules draft --check: cannot compare: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    for line in report(results):
        print(line)
    return 0 if all(not result.mismatched and not result.missing for result in results) else 1

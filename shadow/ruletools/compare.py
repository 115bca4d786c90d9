"""`shadow compare`: check keys by hand — the API's document rebuilt from MongoDB
(through the generic toJSON shape) against the PostgreSQL rebuild, diff printed.
With `--url URL` the control is the real API's answer instead (urlcontrol.py: same
rules, same normalization; `--header` for a reader's token, `--route` to choose).

Exit 0: match · 1: mismatch or missing · 2: cannot compare (bad input, no such
document in Mongo, a server unreachable)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadow.model import FieldDiff


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--rules", default=env("SHADOW_RULES"), required=env("SHADOW_RULES") is None,
                        help="rules directory (env SHADOW_RULES)")
    parser.add_argument("--pg", default=env("SHADOW_PG"), required=env("SHADOW_PG") is None,
                        help="PostgreSQL DSN (env SHADOW_PG)")
    parser.add_argument("--mongo", default=env("SHADOW_MONGO"),
                        help="MongoDB URL (env SHADOW_MONGO); not needed with --url")
    parser.add_argument("--url", default=None, help="take the control from the real API at URL (view models)")
    parser.add_argument("--route", default=None, help="with --url: the route to read, e.g. 'GET /api/x/{id}'")
    parser.add_argument("--header", action="append", help="with --url: 'Name: value' sent to the API (repeat)")
    parser.add_argument("--db", "--mongo-db", dest="db", default=env("SHADOW_MONGO_DB"),
                        help="Mongo database (env SHADOW_MONGO_DB; required with --mongo, no default)")
    parser.add_argument("--entity", required=True, help="entity name from the rules, e.g. payments")
    parser.add_argument("--id", dest="ids", action="append", required=True,
                        help="legacy id (the API's _id); repeat for several")
    parser.add_argument("--json", action="store_true", help="print one JSON object per key")
    parser.add_argument("--show-values", action="store_true",
                        help="print secret and personal values too (no redaction at all)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per server call (default 5)")
    from shadow.policy import add_policy_arguments

    add_policy_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from shadow.compare.diff import compare
    from shadow.policy import policy_from_args
    from shadow.publish.redaction import Redaction
    from shadow.replay.sources.mongo import MongoSource
    from shadow.replay.sources.postgres import PostgresSource
    from shadow.rules import InvalidKey, RulesError, load_rules

    try:
        rules = load_rules(args.rules, policy_from_args(args))
    except (RulesError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    entity = rules.entities.get(args.entity)
    if entity is None:
        print(f"unknown entity {args.entity!r}; the rules have: {', '.join(rules.entities)}", file=sys.stderr)
        return 2
    try:  # with --url the route makes the keys (its normalizer, a constant key) and checks them
        keys = list(args.ids) if args.url else [entity.validate_key(raw) for raw in args.ids]
    except InvalidKey as error:
        print(error, file=sys.stderr)
        return 2
    if not args.url and not args.mongo:
        print("shadow compare: --mongo (or env SHADOW_MONGO) is required unless --url is given", file=sys.stderr)
        return 2
    if not args.url and not args.db:
        print("shadow compare: --mongo-db (or env SHADOW_MONGO_DB) is required with --mongo", file=sys.stderr)
        return 2
    mongo = None if args.url else MongoSource(args.mongo, args.db, timeout=args.timeout)
    pg = None
    try:
        pg = await PostgresSource.create(args.pg, statement_timeout=args.timeout, pool_size=1)
        if args.url:
            from shadow.ruletools.urlcontrol import api_controls, parse_headers, pick_route

            route = pick_route(rules, entity, args.route)
            controls, reader = await api_controls(args.url, route, keys, parse_headers(args.header), args.timeout)
            keys = list(controls)  # as the route keys them (its normalizer applied)
            candidates = await pg.fetch(entity, keys, reader)
        else:
            assert mongo is not None
            controls = await mongo.fetch(entity, keys)
            candidates = await pg.fetch(entity, keys)
    except Exception as error:
        print(f"cannot compare: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    finally:
        if mongo is not None:
            await mongo.close()
        if pg is not None:
            await pg.close()
    worst = 0
    for key in keys:
        if controls[key] is None:
            _report(args, entity.name, key, "not_in_api" if args.url else "not_in_mongo", [], rules.version)
            worst = max(worst, 2)
            continue
        verdict = compare(entity, controls[key], candidates[key], date.today())
        redaction = Redaction.for_entity(entity)  # the sink's redaction: names and the rules' paths
        diffs = verdict.diffs if args.show_values else redaction.diffs(verdict.diffs)
        suppressed = verdict.suppressed if args.show_values else redaction.diffs(verdict.suppressed)
        _report(args, entity.name, key, verdict.outcome.value, diffs, rules.version, suppressed)
        worst = max(worst, 0 if verdict.outcome.value == "match" else 1)
    return worst


def _report(args: argparse.Namespace, entity: str, key: str, outcome: str, diffs: Sequence[FieldDiff], version: str,
            suppressed: Sequence[FieldDiff] = ()) -> None:
    if args.json:
        print(json.dumps({"entity": entity, "key": key, "outcome": outcome, "rules_version": version,
                          "diffs": [_diff(d) for d in diffs], "suppressed": [_diff(d) for d in suppressed]},
                         default=str))
        return
    label = {"not_in_mongo": "NOT IN MONGO (nothing to compare)",
             "not_in_api": "NOT IN THE API (404, nothing to compare)"}.get(outcome, outcome.upper())
    count = f" — {len(diffs)} difference(s)" if diffs else ""
    print(f"{entity} {key}: {label}{count}  (rules {version})")
    for diff in diffs:
        print(f"  {diff.at}  [{diff.kind}]\n    {'API:        ' if args.url else 'mongo (API):'} "
              f"{json.dumps(diff.control, default=str)}\n"
              f"    postgres:    {json.dumps(diff.candidate, default=str)}")
    for diff in suppressed:
        print(f"  {diff.at}  [known divergence, suppressed]")
    if outcome == "missing":
        print("  PostgreSQL has no row for this key")


def _diff(diff: FieldDiff) -> dict[str, Any]:
    return {"path": diff.path, "at": diff.at, "kind": diff.kind, "control": diff.control, "candidate": diff.candidate}

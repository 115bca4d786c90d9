"""`shadow rules check DIR | test FILE… | schema`."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from shadow.policy import RulesPolicy, add_policy_arguments, policy_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="load and validate a rules directory (exit 1 with file:line errors)")
    check.add_argument("directory", help="rules directory, e.g. rules/marketplace")
    check.add_argument("--pg", metavar="DSN", help="also check every table/column the rules read exists there")
    add_policy_arguments(check)
    test = actions.add_parser("test", help="run rule test cases (API document + PG rows -> expected outcome)")
    test.add_argument("files", nargs="+", help="test files, e.g. rules/marketplace/tests/*.yaml")
    add_policy_arguments(test)
    actions.add_parser("schema", help="print the JSON Schema of rule files (for editors)")
    from shadow.ruletools.draft import run as draft

    draft.configure(actions.add_parser("draft", help="draft rules from the PostgreSQL catalog and sampled documents"))


def run(args: argparse.Namespace) -> int:
    if args.rules_action in ("check", "test"):
        try:
            policy = policy_from_args(args)
        except ValueError as problem:
            print(problem, file=sys.stderr)
            return 2
        if args.rules_action == "check":
            return check(Path(args.directory), args.pg, policy)
        return test([Path(name) for name in args.files], policy)
    if args.rules_action == "draft":
        from shadow.ruletools.draft import run as draft

        return draft.run(args)
    from shadow.rules.schema import rule_schema

    print(json.dumps(rule_schema(), indent=2))
    return 0


def check(directory: Path, pg: str | None = None, policy: RulesPolicy | None = None) -> int:
    from shadow.rules import RulesError, load_rules

    try:
        rules = load_rules(directory, policy)
    except RulesError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print(f"FAILED: {len(error.issues)} problem(s) in {directory}", file=sys.stderr)
        return 1
    if pg:
        import asyncio

        from shadow.rules.dbcheck import check_against_database

        try:
            problems = asyncio.run(check_against_database(rules, pg))
        except Exception as error:
            print(f"cannot check against PostgreSQL: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
        for issue in problems:
            print(issue, file=sys.stderr)
        if problems:
            print(f"FAILED: {len(problems)} problem(s) against the database", file=sys.stderr)
            return 1
    today = date.today()
    for entity in rules.entities.values():
        for known in entity.known:
            if known.expires < today:
                print(f"{known.file}:{known.line}: warning: known divergence {known.path!r} expired on "
                      f"{known.expires}; its differences now count as mismatches", file=sys.stderr)
    checked = " (tables and columns found in PostgreSQL)" if pg else ""
    print(f"{directory}: OK — {len(rules.entities)} entities, {len(rules.routes)} routes, "
          f"version {rules.version}{checked}")
    return 0


def test(files: list[Path], policy: RulesPolicy | None = None) -> int:
    from shadow.ruletools.testing import run_file

    failures = total = 0
    for path in files:
        results = run_file(path, policy)
        print(f"{path}: {len(results)} test(s)")
        for result in results:
            total += 1
            if result.passed:
                print(f"  ok    {result.name}")
            else:
                failures += 1
                print(f"  FAIL  {result.name} ({result.file}:{result.line})\n      {result.detail}")
    print(f"{'SUCCESS' if not failures else 'FAILED'}: {total - failures} passed, {failures} failed")
    return 1 if failures else 0

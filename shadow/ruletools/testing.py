"""`shadow rules test FILE…`: offline test cases for rules, in the spirit of `promtool
test rules`. A case gives the API's document and either PostgreSQL rows (rebuilt by
the rules, no database needed) or a candidate document, and the expected outcome and
field paths.

    rules: ..                # rule directory, relative to this file (default: ..)
    today: 2026-11-22        # date for known-divergence expiry (default: today)
    tests:
      - name: decimal scale is not a divergence
        entity: payments
        control: {_id: "65a1…", amount: {value: {$numberDecimal: "12.5"}, currency: USD}}
        rows:                  # by table; id_map rows resolve uuid references
          payments: [{id: "0b7c…", legacy_object_id: "65a1…", amount: "12.500000", currency: USD}]
          id_map: [{collection: users, legacy_object_id: "65a1…", new_id: "0b7c…"}]
        expect: {outcome: match, paths: []}
      - name: a reader's flag and a list under a query      # view models (issue 20)
        entity: articles
        route: GET /api/articles        # a list case: `control` is the API's whole answer
        query: {tag: dragons, limit: "2"}
        reader: "5d7e…"                 # the reader's PostgreSQL id (rows of fields bound to `reader`)
        control: {articles: [...], articlesCount: 3}
        rows: {...}
        expect: {outcome: match}        # or mismatch (paths: [articles[*], articlesCount]) or skipped
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from normalizers.rows import group_rows
from shadow.compare.diff import compare
from shadow.model import Verdict
from shadow.policy import RulesPolicy
from shadow.replay.listcheck import check_list
from shadow.replay.listquery import Unmodeled, unmodeled
from shadow.replay.rebuild import Fetched, rebuild
from shadow.replay.viewread import listing
from shadow.rules.issues import RulesError
from shadow.rules.load import RuleSet, load_rules, read_capped
from shadow.rules.reader import Reader, kind_of
from shadow.rules.spec import AGGREGATES, Condition, Entity, Field, InvalidKey
from shadow.rules.walk import item_fields, table_fields
from shadow.rules.yamltree import YamlProblem, YList, YMap, load_documents
from shadow.ruletools.listcase import select_rows

CASE_KEYS = ("name", "entity", "key", "control", "rows", "candidate", "expect", "reader", "route", "query", "params")
EXPECT_KEYS = ("outcome", "paths", "suppressed")


@dataclass(frozen=True)
class CaseResult:
    file: str
    line: int
    name: str
    passed: bool
    detail: str = ""


def rebuild_from_rows(entity: Entity, key: str, tables: Mapping[str, list[Mapping[str, Any]]],
                      reader: Any = None) -> Any:
    """The candidate for `key` from in-memory rows, as the PostgreSQL source would build
    it; `reader`: the reader's PostgreSQL id, for aggregates bound to the reader."""
    main = [row for row in tables.get(entity.table, []) if row.get(entity.key) == key]
    if not main:
        return None
    legacy_of = {str(row["new_id"]): row["legacy_object_id"] for row in tables.get("id_map", [])}
    children: dict[str, Any] = {}
    level = [(spec, main) for spec in table_fields(entity.fields.values())]
    while level:
        deeper: list[tuple[Any, list[Any]]] = []
        for spec, parents in level:
            parent_values = {row.get(spec.parent) for row in parents}
            if spec.kind in AGGREGATES:  # one grouped row per parent, `n` its value (as the SQL's)
                children[spec.node] = _aggregated(spec, tables, parent_values, reader)
                continue
            rows = [row for row in tables.get(spec.table or "", []) if row.get(spec.fk or "") in parent_values]
            rows.sort(key=lambda row: tuple(row.get(column) for column in spec.order_by))
            children[spec.node] = group_rows(rows, spec.fk or "")
            deeper.extend((sub, rows) for sub in table_fields(item_fields(spec)))
        level = deeper
    return rebuild(entity, main[0], Fetched(children, legacy_of))


def _aggregated(spec: Field, tables: Mapping[str, list[Mapping[str, Any]]], parents: set[Any],
                reader: Any) -> dict[Any, list[Mapping[str, Any]]]:
    fk = spec.fk or ""
    rows = [row for row in tables.get(spec.table or "", []) if row.get(fk) in parents
            and all(_meets(row.get(condition.column), condition, reader) for condition in spec.where[1:])]
    grouped: dict[Any, list[Mapping[str, Any]]] = {}
    for parent, members in group_rows(rows, fk).items():
        if spec.kind == "sum":
            values = [row.get(spec.of or "") for row in members if row.get(spec.of or "") is not None]
            total: Any = sum((Decimal(str(value)) for value in values), Decimal(0)) if values else None
            if values and all(isinstance(value, int) for value in values):
                total = int(total)
            grouped[parent] = [{fk: parent, "n": total}]
        else:
            grouped[parent] = [{fk: parent, "n": len(members)}]
    return grouped


def _meets(value: Any, condition: Condition, reader: Any) -> bool:
    if condition.bind == "reader":
        return reader is not None and str(value) == str(reader)
    if condition.op == "in":
        return value in condition.value or str(value) in {str(item) for item in condition.value}
    return bool(value == condition.value or str(value) == str(condition.value))


def run_file(path: Path, policy: RulesPolicy | None = None) -> list[CaseResult]:
    """Every case of one test file (a file that cannot be read is one failed case).
    Test files may use anchors and merge keys (expansion capped); the same size cap
    and normalizer allow-list as the rules apply."""
    policy = policy or RulesPolicy()
    display = str(path)
    try:
        data = read_capped(path, policy.max_file_bytes)
        if data is None:
            raise ValueError(f"larger than {policy.max_file_bytes} bytes, not read (--rules-max-bytes)")
        [document] = load_documents(data.decode("utf-8"), aliases=True)
    except (OSError, YamlProblem, ValueError) as error:
        return [CaseResult(display, getattr(error, "line", 0), "(file)", False, str(error))]
    reader = Reader(display)
    if not isinstance(document, YMap):
        return [CaseResult(display, 1, "(file)", False,
                           f"a test file is a mapping with 'tests:', got {kind_of(document)}")]
    reader.keys(document, ("rules", "today", "tests"), "test file", required=("tests",))
    try:
        rules = load_rules((path.parent / str(document.get("rules", ".."))).resolve(), policy)
    except RulesError as error:
        return [CaseResult(display, document.line_of("rules"), "(rules)", False, str(error))]
    today = document.get("today", date.today())
    cases = document.get("tests")
    if reader.issues or not isinstance(cases, YList) or not isinstance(today, date):
        problems = [str(issue) for issue in reader.issues] or ["'tests' must be a list and 'today' a date"]
        return [CaseResult(display, document.line, "(file)", False, "; ".join(problems))]
    return [_run_case(reader, rules, today, case, cases.line_of(index)) for index, case in enumerate(cases)]


def _run_case(reader: Reader, rules: RuleSet, today: date, case: Any, line: int) -> CaseResult:
    name = case.get("name", f"case at line {line}") if isinstance(case, YMap) else f"case at line {line}"

    def failed(detail: str) -> CaseResult:
        return CaseResult(reader.file, line, str(name), False, detail)

    if not isinstance(case, YMap):
        return failed(f"a test case is a mapping, got {kind_of(case)}")
    before = len(reader.issues)
    reader.keys(case, CASE_KEYS, f"test {name!r}", required=("entity", "control", "expect"))
    expect = case.get("expect")
    if isinstance(expect, YMap):
        reader.keys(expect, EXPECT_KEYS, f"test {name!r} expect", required=("outcome",))
    if len(reader.issues) > before:
        return failed("; ".join(issue.message for issue in reader.issues[before:]))
    if not isinstance(expect, YMap):
        return failed(f"'expect' is a mapping, got {kind_of(expect)}")
    if ("rows" in case) == ("candidate" in case):
        return failed("give exactly one of 'rows' (PostgreSQL rows) or 'candidate' (a rebuilt document)")
    entity = rules.entities.get(str(case["entity"]))
    if entity is None:
        return failed(f"unknown entity {case['entity']!r} (rules have: {', '.join(rules.entities)})")
    control = case["control"]
    if "route" in case:
        return _list_case(reader.file, line, str(name), rules, entity, case, expect)
    if "query" in case or "params" in case:
        return failed("'query' and 'params' describe a list read: give 'route' too")
    if "rows" in case:
        key = case.get("key") or (control.get(entity.id_field) if isinstance(control, dict) else None)
        candidate = rebuild_from_rows(entity, str(key), case["rows"], case.get("reader"))
    else:
        candidate = case["candidate"]
    verdict = compare(entity, control, candidate, today)
    return _check(reader.file, line, str(name), verdict, expect)


def _list_case(file: str, line: int, name: str, rules: RuleSet, entity: Entity, case: YMap,
               expect: YMap) -> CaseResult:
    """A list read: the API's whole answer (`control`) against what the rows select for
    the route under `query`, `params` and `reader` — members, order, total, page count
    (the members' own fields are compared by document cases)."""
    route = rules.route_named(str(case["route"]))
    if route is None or route.entity != entity.name or not route.is_list:
        return CaseResult(file, line, name, False, f"{case['route']!r} is not a list route of {entity.name!r}")
    if "rows" not in case:
        return CaseResult(file, line, name, False, "a list case needs 'rows' (what PostgreSQL holds)")
    query = case.get("query") or {}
    params = case.get("params") or {}
    if not isinstance(query, Mapping) or not isinstance(params, Mapping):
        return CaseResult(file, line, name, False, "'query' and 'params' map names to values")
    query = {str(name_): [str(item) for item in (value if isinstance(value, list) else [value])]
             for name_, value in query.items()}
    try:
        listed = listing(route, case["control"], query)
    except InvalidKey as problem:
        return CaseResult(file, line, name, False, f"control: {problem}")
    if listed is None:
        return CaseResult(file, line, name, False, f"control has no list at {'.'.join(route.at) or 'the top'}")
    try:
        if unmodeled(route, query):
            names = ", ".join(unmodeled(route, query))
            raise Unmodeled(names, names)
        keys, total, pages, echo = select_rows(entity, route, case["rows"], {str(k): str(v) for k, v in params.items()},
                                         query, case.get("reader"))
    except Unmodeled as why:
        outcome = "skipped"
        detail = f"not list-checked: {why}"
        got: list[str] = []
    else:
        checked = check_list(route, listed, keys, total, pages, echo)
        got = sorted({diff.path for diff in checked.findings(route)})
        outcome, detail = ("mismatch" if got else "match"), ""
    problems = []
    if outcome != expect["outcome"]:
        problems.append(f"outcome: expected {expect['outcome']}, got {outcome}" + (f" ({detail})" if detail else ""))
    if "paths" in expect and sorted(set(expect["paths"] or [])) != got:
        problems.append(f"paths: expected {sorted(set(expect['paths'] or []))}, got {got}")
    return CaseResult(file, line, name, not problems, "\n      ".join(problems))


def _check(file: str, line: int, name: str, verdict: Verdict, expect: YMap) -> CaseResult:
    got_paths = sorted({diff.path for diff in verdict.diffs})
    got_suppressed = sorted({diff.path for diff in verdict.suppressed})
    problems = []
    if verdict.outcome.value != expect["outcome"]:
        problems.append(f"outcome: expected {expect['outcome']}, got {verdict.outcome.value}")
    if "paths" in expect and sorted(set(expect["paths"] or [])) != got_paths:
        problems.append(f"paths: expected {sorted(set(expect['paths'] or []))}, got {got_paths}")
    if "suppressed" in expect and sorted(set(expect["suppressed"] or [])) != got_suppressed:
        problems.append(f"suppressed: expected {sorted(set(expect['suppressed'] or []))}, got {got_suppressed}")
    if problems and verdict.diffs:
        problems.append("differences: "
                        + "; ".join(f"{d.at}: {d.control!r} != {d.candidate!r}" for d in verdict.diffs[:5]))
    return CaseResult(file, line, name, not problems, "\n      ".join(problems))

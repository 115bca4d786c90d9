"""`shadow rules draft --check`: the drafted rules run over the sampled keys as
`shadow compare` runs one key — the stored document through the entity's toJSON view
(control) against the PostgreSQL rebuild (candidate) — and, per path that still
differs, how many keys differ and the likely reason, so the first edit is guided.
Prints paths, kinds and counts only: never a value."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from shadow.rules.spec import Entity


@dataclass(frozen=True, slots=True)
class PathFinding:
    """One path that differs on some sampled keys."""

    entity: str
    path: str
    kind: str
    keys: int  # sampled keys where this path differs
    compared: int  # keys compared (both sides present)
    reason: str


@dataclass(frozen=True, slots=True)
class EntityCheck:
    entity: str
    matched: int
    mismatched: int
    missing: int
    findings: tuple[PathFinding, ...]


def likely_reason(entity: Entity, path: str, kind: str, keys: int, compared: int) -> str:
    top = path.split(".")[0].split("[")[0]
    if top not in entity.fields:
        return ("the API shows it, no field rebuilds it: map it, or list it in `hidden:` (never shown) "
                "or `ignore:`")
    if kind == "type":
        return "the two sides hold different types: an `as:` normalizer is missing or the column is wrong"
    if kind == "order":
        return "same items, another order: `order_by:` the column that keeps the API's order, or `order: unordered`"
    if keys == compared and compared > 1:
        return "differs on every sampled key: the rule is likely wrong (column, `to:`, normalizer)"
    if kind in ("missing_in_candidate", "missing_in_control"):
        side = "PostgreSQL" if kind == "missing_in_candidate" else "the API"
        return f"{side} lacks it on {keys} of {compared} keys: a row or value missing there, or an absent default"
    return f"differs on {keys} of {compared} keys only: likely a data divergence, not the rule"


def check_entity(entity: Entity, controls: Mapping[str, Any], candidates: Mapping[str, Any],
                 today: date) -> EntityCheck:
    from shadow.compare.diff import compare

    matched = mismatched = missing = 0
    paths: Counter[tuple[str, str]] = Counter()
    for key, control in controls.items():
        if control is None:
            continue
        verdict = compare(entity, control, candidates.get(key), today)
        outcome = verdict.outcome.value
        if outcome == "match":
            matched += 1
        elif outcome == "missing":
            missing += 1
        else:
            mismatched += 1
            paths.update({(diff.path, diff.kind) for diff in verdict.diffs})
    compared = matched + mismatched
    findings = tuple(PathFinding(entity.name, path, kind, count, compared,
                                 likely_reason(entity, path, kind, count, compared))
                     for (path, kind), count in sorted(paths.items(), key=lambda item: (-item[1], item[0])))
    return EntityCheck(entity.name, matched, mismatched, missing, findings)


async def run_check(rules_dir: str, pg: str, mongo: str, mongo_db: str, keys: Mapping[str, Sequence[str]],
                    timeout: float) -> list[EntityCheck]:
    """Every drafted entity over its collection's sampled keys (`keys`: collection -> ids)."""
    from shadow.replay.sources.mongo import MongoSource
    from shadow.replay.sources.postgres import PostgresSource
    from shadow.rules import InvalidKey, load_rules

    rules = load_rules(rules_dir)
    results = []
    mongo_source = MongoSource(mongo, mongo_db, timeout=timeout)
    pg_source = await PostgresSource.create(pg, statement_timeout=timeout, pool_size=1)
    try:
        for entity in rules.entities.values():
            valid = []
            for raw in keys.get(entity.collection, ()):
                try:
                    valid.append(entity.validate_key(raw))
                except InvalidKey:
                    continue
            if entity.view or not valid:
                continue
            controls = await mongo_source.fetch(entity, valid)
            candidates = await pg_source.fetch(entity, valid)
            results.append(check_entity(entity, controls, candidates, date.today()))
    finally:
        await mongo_source.close()
        await pg_source.close()
    return results


def report(results: Sequence[EntityCheck]) -> list[str]:
    lines = []
    for result in results:
        total = result.matched + result.mismatched + result.missing
        lines.append(f"{result.entity}: {result.matched} match, {result.mismatched} mismatch, "
                     f"{result.missing} missing of {total} sampled key(s)")
        if result.missing:
            lines.append(f"  (document)  [missing] {result.missing} key(s) — no PostgreSQL row: not backfilled, "
                         "deleted, or the key column is wrong")
        for finding in result.findings:
            lines.append(f"  {finding.path}  [{finding.kind}] {finding.keys} key(s) — {finding.reason}")
    return lines

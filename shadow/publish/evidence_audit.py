"""The audit trail in the evidence store: `shadow verify --evidence DSN` records each run
(one row per layer) and the documents each difference names; `shadow gate --evidence
DSN` records every verdict with its reasons. Both take the commands' JSON reports (their
stable output), so the commands need only one call each."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from shadow.publish import evidence_store
from shadow.publish.sink import to_json

#: documents recorded per run and layer (the report itself caps differences per entity)
MAX_DOCUMENTS = 10_000


def _stamp(value: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(value) if isinstance(value, (int, float)) else time.time(), dt.UTC)


def verify_rows(report: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any], list[tuple[str, str, str, str]]]]:
    """(layer, outcome, summary, documents) per layer of a `shadow verify --json` report."""
    per_layer: dict[str, dict[str, Any]] = {}
    for entity, found in (report.get("entities") or {}).items():
        for layer, result in (found.get("layers") or {}).items():
            row = per_layer.setdefault(layer, {"entities": 0, "checked": 0, "differences": 0, "errors": 0,
                                               "statuses": set(), "documents": [], "by_entity": {}})
            row["entities"] += 1
            row["by_entity"][entity] = result.get("status")
            row["checked"] += int(result.get("checked") or 0)
            differences = result.get("differences") or []
            row["differences"] += len(differences) + int(result.get("truncated") or 0)
            row["errors"] += 1 if result.get("error") else 0
            row["statuses"].add(result.get("status"))
            for difference in differences:
                for key, detail in _named(difference):
                    if len(row["documents"]) < MAX_DOCUMENTS:
                        row["documents"].append((entity, key, str(difference.get("kind", "")), detail))
    rows = []
    for layer, row in per_layer.items():
        statuses = row.pop("statuses")
        outcome = "error" if "error" in statuses else "differences" if row["differences"] else "ok"
        documents = row.pop("documents")
        row["rules_version"] = report.get("rules_version")
        row["partition"] = report.get("partition")
        rows.append((layer, outcome, row, documents))
    if not rows and report.get("error"):
        rows.append(("all", "error", {"error": report["error"], "rules_version": report.get("rules_version")}, []))
    return rows


def _named(difference: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, detail) of each document a difference names: a docs difference names its own
    document; a counts difference has an empty key but a sample of the documents it
    concerns (each with its key and maybe a path)."""
    check = str(difference.get("check", ""))
    if difference.get("key") or not difference.get("documents"):
        parts = (check, str(difference.get("path", "")))
        return [(str(difference.get("key", "")), " ".join(part for part in parts if part))]
    named = []
    for document in difference["documents"]:
        if isinstance(document, Mapping):
            parts = (check, str(document.get("path", "")))
            named.append((str(document.get("key", "")), " ".join(part for part in parts if part)))
    return named


async def record_verify(dsn: str, report: Mapping[str, Any]) -> list[int]:
    """Record a verify run; the ids of its rows (one per layer)."""
    connection = await evidence_store.connect(dsn)
    ids = []
    try:
        async with connection.transaction():
            for layer, outcome, summary, documents in verify_rows(report):
                run = await connection.fetchval(
                    f"INSERT INTO {evidence_store.SCHEMA}.verify_runs (at, layer, outcome, summary) "
                    "VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
                    _stamp(report.get("finished") or report.get("started")), layer, outcome, to_json(summary).decode())
                if documents:
                    await connection.executemany(
                        f"INSERT INTO {evidence_store.SCHEMA}.verify_documents (run, entity, key, kind, detail) "
                        "VALUES ($1, $2, $3, $4, $5)", [(run, *document) for document in documents])
                ids.append(run)
    finally:
        await connection.close()
    return ids


async def record_gate(dsn: str, report: Mapping[str, Any]) -> int:
    """Record one gate verdict (`shadow gate --json`'s report) with its reasons."""
    connection = await evidence_store.connect(dsn)
    try:
        verdict_id: int = await connection.fetchval(
            f"INSERT INTO {evidence_store.SCHEMA}.gate_verdicts (at, verdict, reasons, report) "
            "VALUES (now(), $1, $2::jsonb, $3::jsonb) RETURNING id",
            str(report.get("verdict", "?")), to_json(list(report.get("reasons") or ())).decode(),
            to_json(dict(report)).decode())
    finally:
        await connection.close()
    return verdict_id


def _problem(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def record_verify_or_warn(dsn: str, report: Mapping[str, Any]) -> bool:
    """For the CLI: record, or say on stderr why not (False)."""
    import sys

    try:
        await record_verify(dsn, report)
    except Exception as error:  # the store's failure is reported, the run's result stands
        print(f"shadow verify: evidence store: run not recorded: {_problem(error)}", file=sys.stderr)
        return False
    return True


def record_gate_or_warn(dsn: str, report: Mapping[str, Any], err: Any) -> bool:
    """For the CLI (synchronous): record, or say on `err` why not (False)."""
    import asyncio

    try:
        asyncio.run(record_gate(dsn, report))
    except Exception as error:
        print(f"shadow gate: evidence store: verdict not recorded: {_problem(error)}", file=err)
        return False
    return True

"""Each planted drift is in PostgreSQL, and nothing else changed — at the row level and
at the API-document level (rebuilt with the explicit SQL of test_backfill)."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from pymongo import AsyncMongoClient

from shadow.demo.marketplace.backfill import TABLE_COLUMNS
from shadow.demo.marketplace.cli import LoadedDomain, load_domain
from shadow.demo.marketplace.drift import plant

from .test_backfill import EXPECTED_SQL, HELPERS, canonical  # noqa: TID252 (a sibling test module)

SEED, SCALE = 7, 20

#: table -> the columns naming one row, and the column holding the owning document's uuid
ROW_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "id_map": (("collection", "legacy_object_id"), "new_id"),
    "user_passkeys": (("user_id", "position"), "user_id"),
    "user_refresh_tokens": (("user_id", "position"), "user_id"),
    "pr_delivery_info": (("pr_id",), "pr_id"),
    "purchase_request_preferred_sellers": (("pr_id", "position"), "pr_id"),
    "purchase_request_offers": (("pr_id", "position"), "pr_id"),
    "dispute_evidence": (("dispute_id", "position"), "dispute_id"),
    "dispute_timeline": (("dispute_id", "position"), "dispute_id"),
}

#: kind -> (table, change, columns changed) it must cause, and nothing more
EXPECTED_ROW_CHANGES: dict[str, tuple[str, str, frozenset[str]]] = {
    "wrong_ref": ("payments", "changed", frozenset({"buyer_id"})),
    "mixed_kind": ("payments", "changed", frozenset({"purchase_request_ref_kind", "purchase_request_id",
                                                     "purchase_request_external_ref"})),
    "amount_off_1e-18": ("payments", "changed", frozenset({"amount"})),
    "timestamp_off_1s": ("payments", "changed", frozenset({"updated_at"})),
    "timestamp_us_truncation": ("payments", "changed", frozenset({"created_at"})),
    "jsonb_change": ("payments", "changed", frozenset({"metadata"})),
    "missing_child_row": ("purchase_request_offers", "removed", frozenset()),
    "enum_drift": ("purchase_requests", "changed", frozenset({"budget_currency"})),
    "extra_child_row": ("dispute_evidence", "added", frozenset()),
    "reordered_timeline": ("dispute_timeline", "changed", frozenset({"action", "actor_id", "note", "at"})),
    "decimal_scale_only": ("funds_ledger_entries", "changed", frozenset({"balance_after"})),
    "missing_row": ("funds_ledger_entries", "removed", frozenset()),
}


async def snapshot(conn: asyncpg.Connection) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row of every table, keyed by (table-specific) row key; values as PG prints them."""
    tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for table in TABLE_COLUMNS:
        key_columns = ROW_KEYS.get(table, (("id",), "id"))[0]
        rows = await conn.fetch(f"SELECT to_jsonb(t)::text AS row FROM {table} t")
        tables[table] = {}
        for record in rows:
            row = json.loads(record["row"], parse_float=str)  # keep numeric scale: 1.50 != 1.5 here
            tables[table][tuple(row[c] for c in key_columns)] = row
    return tables


def row_changes(before, after, owner_of) -> list[tuple[str, str, str, frozenset[str]]]:
    """(table, document legacy id, added|removed|changed, changed columns) for every row difference."""
    changes = []
    for table in TABLE_COLUMNS:
        owner_column = ROW_KEYS.get(table, (("id",), "id"))[1]
        old, new = before[table], after[table]
        for key in old.keys() - new.keys():
            changes.append((table, owner_of(old[key][owner_column]), "removed", frozenset()))
        for key in new.keys() - old.keys():
            changes.append((table, owner_of(new[key][owner_column]), "added", frozenset()))
        for key in old.keys() & new.keys():
            columns = frozenset(c for c in old[key] if old[key][c] != new[key][c])
            if columns:
                changes.append((table, owner_of(old[key][owner_column]), "changed", columns))
    return changes


def diff_paths(control: Any, candidate: Any, prefix: str = "") -> set[str]:
    """API field paths where two documents differ (array items collapsed to `[*]`)."""
    if isinstance(control, dict) and isinstance(candidate, dict):
        paths: set[str] = set()
        for key in control.keys() | candidate.keys():
            path = f"{prefix}.{key}" if prefix else key
            if key not in control or key not in candidate:
                paths.add(path)
            else:
                paths |= diff_paths(control[key], candidate[key], path)
        return paths
    if isinstance(control, list) and isinstance(candidate, list):
        return set() if control == candidate else {f"{prefix}[*]"}
    return set() if control == candidate else {prefix}


@pytest.fixture
async def domain(pg_dsn: str, mongo_server, mongo_db_name: str) -> AsyncIterator[tuple[LoadedDomain, Any]]:
    loaded = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=SCALE, seed=SEED, drift=False)
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(HELPERS)
    try:
        yield loaded, conn
    finally:
        await conn.close()


async def test_each_plant_changes_exactly_its_rows(domain) -> None:
    loaded, conn = domain
    legacy_of = {new: legacy for (_, legacy), new in loaded.id_map.new_ids.items()}
    before = await snapshot(conn)
    drifts = await plant(conn, loaded.dataset, SEED)
    after = await snapshot(conn)

    assert sorted(d.kind for d in drifts) == sorted(EXPECTED_ROW_CHANGES)
    assert len({d.legacy_id for d in drifts}) == len(drifts)  # distinct documents
    changes = row_changes(before, after, lambda owner: legacy_of[uuid.UUID(owner)])
    by_document: dict[tuple[str, str], list[tuple[str, frozenset[str]]]] = {}
    for table, legacy, change, columns in changes:
        by_document.setdefault((legacy, table), []).append((change, columns))
    assert set(by_document) == {(d.legacy_id, EXPECTED_ROW_CHANGES[d.kind][0]) for d in drifts}, changes
    for drift in drifts:
        table, change, columns = EXPECTED_ROW_CHANGES[drift.kind]
        found = by_document[(drift.legacy_id, table)]
        assert len(found) == (2 if drift.kind == "reordered_timeline" else 1), (drift, found)  # a swap: 2 rows
        for found_change, found_columns in found:
            assert found_change == change, drift
            assert found_columns <= columns and (found_columns or not columns), drift


async def test_each_divergent_plant_shows_at_its_api_path_only(domain, mongo_server, mongo_db_name) -> None:
    loaded, conn = domain
    drifts = await plant(conn, loaded.dataset, SEED)
    planted = {(d.collection, d.legacy_id): d for d in drifts}
    seen: set[tuple[str, str]] = set()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    try:
        for collection, sql in EXPECTED_SQL.items():
            rebuilt = {row[0]: orjson.loads(row[1]) for row in await conn.fetch(sql)}
            async for doc in client[mongo_db_name][collection].find({}):
                legacy_id = str(doc["_id"])
                drift = planted.get((collection, legacy_id))
                if legacy_id not in rebuilt:
                    assert drift is not None and drift.kind == "missing_row" and drift.path == ""
                    seen.add((collection, legacy_id))
                    continue
                paths = diff_paths(canonical(doc), rebuilt[legacy_id])
                if drift is None or not drift.divergent:
                    assert paths == set(), (collection, legacy_id, drift)  # scale / µs noise is no divergence
                else:
                    assert paths == {drift.path}, (drift, paths)
                if drift is not None:
                    seen.add((collection, legacy_id))
    finally:
        await client.close()
    assert seen == set(planted)


async def test_non_divergent_plants_really_changed_pg(domain) -> None:
    loaded, conn = domain
    drifts = {d.kind: d for d in await plant(conn, loaded.dataset, SEED)}
    scale = drifts["decimal_scale_only"]
    text = await conn.fetchval("SELECT balance_after::text FROM funds_ledger_entries WHERE legacy_object_id = $1",
                               scale.legacy_id)
    original = loaded.dataset.by_id("fundsledgerentries")[scale.legacy_id]["balanceAfter"].to_decimal()
    assert text != str(original) and text.endswith("000000")
    micro = drifts["timestamp_us_truncation"]
    created = await conn.fetchval("SELECT created_at FROM payments WHERE legacy_object_id = $1", micro.legacy_id)
    assert created.microsecond % 1000 == 400


async def test_marketplace_fixture_has_the_drift(marketplace) -> None:
    assert {d.kind for d in marketplace.drifts} == set(EXPECTED_ROW_CHANGES)
    assert {d.kind for d in marketplace.drifts if not d.divergent} == {"decimal_scale_only", "timestamp_us_truncation"}

"""View-model routes of the sample API (issue 12) through the whole sidecar: a purchase
request with its buyer embedded, an offers count, flags for the reader from a JWT, a
buyer's list filtered by ?status=, paged, sorted, with a total; a scalar list.
The consistent rows give no mismatch at all; each planted divergence is found at its path
(count, per-reader flag, list order, API-only list member, total)."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from shadow.demo.marketplace.viewdrift import (
    VIEWS,
    count_findings,
    list_key,
    plant_views,
)
from shadow.demo.marketplace.views import demo_token

RULES = Path(__file__).parents[2] / "rules" / "marketplace"
LIST_QUERIES = ("", "?limit=2", "?limit=2&offset=1", "?status=open,in_progress", "?status=cancelled&limit=1",
                "?limit=0")


async def fetch_all(base: str, reads: list[tuple[str, str | None]]) -> list[tuple[int, bytes]]:
    semaphore = asyncio.Semaphore(8)
    results: list[tuple[int, bytes]] = [(0, b"")] * len(reads)
    async with aiohttp.ClientSession() as session:
        async def one(index: int, path: str, reader: str | None) -> None:
            headers = {"Authorization": f"Bearer {demo_token(reader)}"} if reader else {}
            async with semaphore, session.get(base + path, headers=headers) as response:
                results[index] = (response.status, await response.read())
        await asyncio.gather(*(one(index, path, reader) for index, (path, reader) in enumerate(reads)))
    return results


def view_reads(dataset: Any, extra_readers: set[str]) -> list[tuple[str, str | None]]:
    reads: list[tuple[str, str | None]] = []
    sellers: dict[str, set[str]] = {}
    for offer in dataset.collections["selleroffers"]:
        sellers.setdefault(str(offer["purchaseRequestId"]), set()).add(str(offer["sellerId"]))
    for request in dataset.collections["purchaserequests"]:
        key = str(request["_id"])
        for reader in [*sorted({str(request["buyerId"]), *sellers.get(key, ()), *extra_readers}), None]:
            reads.append((f"/api/views/purchase-requests/{key}", reader))
    for user in dataset.collections["users"]:
        for query in LIST_QUERIES:
            reads.append((f"/api/views/users/{user['_id']}/purchase-requests{query}", str(user["_id"])))
    reads.append(("/api/views/purchase-request-statuses", None))
    return reads


@pytest.mark.parametrize("engine", ["raw"])
async def test_view_models_match_and_planted_view_drift_is_found_at_its_path(marketplace, sample_api, start) -> None:
    dataset = marketplace.dataset
    base = {d.legacy_id for d in marketplace.drifts}
    connection = await asyncpg.connect(marketplace.pg_dsn)
    try:
        plants = await plant_views(connection, dataset, 7, base)
    finally:
        await connection.close()
    plants += count_findings(marketplace.drifts)
    sidecar = await start(upstream=sample_api, rules=RULES, pg=marketplace.pg_dsn, workers=2, source_timeout=5.0,
                          recent_mismatches=10_000)
    reads = view_reads(dataset, {plant.reader for plant in plants if plant.reader})
    direct = await fetch_all(sample_api, reads)
    assert {status for status, _ in direct} == {200}
    assert await fetch_all(sidecar.proxy_url, reads) == direct  # byte-transparent
    assert await sidecar.pipeline.drain(60)

    found: set[tuple[str, str, str]] = set()
    for entry in sidecar.sink.recent(limit=100_000):
        assert entry.outcome in ("mismatch", "extra"), entry
        if entry.outcome == "extra":
            found.add((entry.entity, entry.key or "", "<extra>"))
        for diff in entry.diffs:
            found.add((entry.entity, entry.key or "", diff.path))
    required = {finding for plant in plants for finding in plant.findings if finding[0] == VIEWS}
    moved = next(plant for plant in plants if plant.kind == "list_member")
    moved_key = next(key for entity, key, path in moved.findings if path == "buyer")
    target_list = next(key for entity, key, path in moved.findings if path == "total" and key != moved.findings[0][1])
    allowed = required | {(VIEWS, moved_key, "isMine"), (VIEWS, moved_key, "<extra>"), (VIEWS, target_list, "data[*]")}
    # a page that moved shows other rows PostgreSQL now selects: `extra` for requests of the buyers involved
    buyers = {key[len("[list id="):-1] for plant in plants for _, key, _ in plant.findings if key.startswith("[list")}
    for request in dataset.collections["purchaserequests"]:
        if str(request["buyerId"]) in buyers:
            allowed |= {(VIEWS, str(request["_id"]), "<extra>"), (VIEWS, str(request["_id"]), "")}
    missing = {finding for finding in required if not any(_covers(finding, seen) for seen in found)}
    unexplained = {seen for seen in found if not any(_covers(finding, seen) for finding in allowed)}
    detail = [(e.outcome, e.route, e.key, e.diffs) for e in sidecar.sink.recent(limit=100_000)
              if any(_covers(u, (e.entity, e.key or "", "")) or u[1] == e.key for u in unexplained)]
    assert missing == set() and unexplained == set(), detail
    # where the list findings are: at the list's path, not inside its members
    kinds = {(diff.path, diff.kind) for entry in sidecar.sink.recent(limit=100_000)
             if entry.key and entry.key.startswith("[list") for diff in entry.diffs}
    assert ("data[*]", "order") in kinds and ("data[*]", "missing_in_candidate") in kinds and ("total", "changed") in kinds
    totals: Counter[str] = Counter()
    for counts in sidecar.sink.counts.values():
        totals.update(counts)
    singles = sum(1 for path, _ in reads if path.startswith("/api/views/purchase-requests/"))
    assert totals["error"] == 0 and totals["skipped"] == 0, totals
    assert totals["match"] >= singles - 10, totals  # list members are compared one by one too


def _covers(planted: tuple[str, str, str], seen: tuple[str, str, str]) -> bool:
    entity, key, path = planted
    return seen[0] == entity and seen[1] == key and (seen[2] == path or seen[2].startswith((path + ".", path + "[")))


def test_list_keys_name_the_list() -> None:
    assert list_key("65a1") == "[list id=65a1]"

"""The whole product on the reference domain: the sample Mongo-backed API, PostgreSQL
remodeled through id_map with planted divergences, the shipped rules, and the sidecar in
front. Every answer is the API's own; every planted divergence is reported as a mismatch
with its path, every consistent key as a match."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from shadow.rules import load_rules

RULES = Path(__file__).parents[2] / "rules" / "marketplace"
PATHS = {"users": "/api/users/{}", "addresses": "/api/addresses/{}", "categories": "/api/categories/{}",
         "selleroffers": "/api/seller-offers/{}", "purchaserequests": "/api/purchase-requests/{}",
         "payments": "/api/payments/{}", "fundsledgerentries": "/api/funds-ledger/{}", "disputes": "/api/disputes/{}"}



async def test_planted_divergences_are_mismatches_at_their_paths_and_the_rest_match(marketplace, sample_api, start, probe) -> None:
    entity_of = {entity.collection: name for name, entity in load_rules(RULES).entities.items() if not entity.view}
    sidecar = await start(upstream=sample_api, rules=RULES, pg=marketplace.pg_dsn, workers=2, source_timeout=5.0)
    paths, key_of = [], {}
    for collection, template in PATHS.items():
        for key in marketplace.dataset.by_id(collection):
            paths.append(template.format(key))
            key_of[paths[-1]] = (entity_of[collection], key)
    direct = await probe.get_all(sample_api, paths)
    assert await probe.get_all(sidecar.proxy_url, paths) == direct
    await probe.settle(sidecar, timeout=30)

    found = {(entry.entity, entry.key): entry for entry in sidecar.sink.recent(limit=10_000)}
    served = {key_of[path] for path, (status, _) in zip(paths, direct, strict=True) if status == 200}
    divergent = {(entity_of[d.collection], d.legacy_id): d for d in marketplace.drifts if d.divergent}
    problems = []
    for (entity, key), drift in divergent.items():
        if (entity, key) not in served:
            continue  # e.g. a document the API itself no longer shows
        entry = found.get((entity, key))
        if entry is None:
            problems.append(f"{entity} {key}: planted {drift.kind} at {drift.path!r} not reported")
        elif drift.path and not any(_under(diff.path, drift.path) for diff in entry.diffs):
            problems.append(f"{entity} {key}: planted {drift.kind} at {drift.path!r}, reported {[d.path for d in entry.diffs]}")
    for (entity, key), entry in found.items():
        if (entity, key) not in divergent:
            problems.append(f"{entity} {key}: {entry.outcome} {[d.path for d in entry.diffs]} but nothing was planted")
    assert problems == []
    totals = Counter()
    for entity in sidecar.sink.counts.values():
        totals.update(entity)
    assert totals["error"] == 0
    assert totals["match"] >= len(served) - len(divergent)


def _under(reported: str, planted: str) -> bool:
    """`timeline[*].at` is within a plant at `timeline[*]`."""
    return reported == planted or reported.startswith((planted + ".", planted + "["))


async def test_a_postgres_write_landing_after_the_read_is_transient(marketplace, sample_api, start, probe) -> None:
    import asyncpg
    from bson import ObjectId
    from pymongo import AsyncMongoClient

    drifted = {d.legacy_id for d in marketplace.drifts}
    key = next(k for k in marketplace.dataset.by_id("payments") if k not in drifted)
    current = marketplace.dataset.by_id("payments")[key]["status"]
    new_status = "refunded" if current != "refunded" else "failed"
    client: AsyncMongoClient = AsyncMongoClient(marketplace.mongo_uri, tz_aware=True)
    try:  # dual-write: Mongo first ...
        await client[marketplace.mongo_db]["payments"].update_one({"_id": ObjectId(key)}, {"$set": {"status": new_status}})
    finally:
        await client.close()
    sidecar = await start(upstream=sample_api, rules=RULES, pg=marketplace.pg_dsn)
    [(status, _)] = await probe.get_all(sidecar.proxy_url, [f"/api/payments/{key}"])
    assert status == 200
    # ... PostgreSQL once the first read was compared, before the route's recheck (2 s)
    await probe.until(lambda: probe.stage_count(sidecar, "compare", "payments") >= 1, "the first comparison")
    connection = await asyncpg.connect(marketplace.pg_dsn)
    try:
        await connection.execute("UPDATE payments SET status = $1 WHERE legacy_object_id = $2", new_status, key)
    finally:
        await connection.close()
    await probe.settle(sidecar, timeout=15)
    assert dict(sidecar.sink.counts["payments"]) == {"transient": 1}
    assert sidecar.registry.get_sample_value("shadow_transient_fields_total", {"entity": "payments", "field": "status"}) == 1

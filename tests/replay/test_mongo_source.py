"""After a read flip the API reads PostgreSQL and the shadow source is MongoDB: the same
proxy and pipeline, with `source: mongo` routes, against the real Mongo wire server."""
from __future__ import annotations

from pathlib import Path

from pymongo import AsyncMongoClient


async def test_mongo_source_routes_compare_against_mongo(world, start, probe, mongo_server, mongo_db_name, tmp_path: Path) -> None:
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    try:
        documents = [dict(document) for document in world.documents.values()]
        documents[2]["name"] = "stale in mongo"  # w0003 diverges
        await client[mongo_db_name]["widgets"].insert_many(documents)
    finally:
        await client.close()
    flipped = tmp_path / "flipped-rules"
    flipped.mkdir()
    (flipped / "widgets.yaml").write_text(probe.rules_text.replace(
        "  - route: GET /quick/{id}\n    recheck: 0\n", "  - route: GET /quick/{id}\n    recheck: 0\n    source: mongo\n"))
    sidecar = await start(rules=flipped, pg=None, mongo=mongo_server.uri, mongo_db=mongo_db_name)
    paths = [f"/quick/w{n:04d}" for n in range(1, 11)]
    assert await probe.get_all(sidecar.proxy_url, paths) == await probe.get_all(world.api_url, paths)
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 9, "mismatch": 1}
    [entry] = sidecar.sink.recent()
    assert (entry.key, entry.source, [d.path for d in entry.diffs]) == ("w0003", "mongo", ["name"])
    # routes still on the postgres source have none configured here: errors, not crashes
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0001"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar)["error"] == 1

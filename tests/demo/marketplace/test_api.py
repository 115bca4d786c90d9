"""The sample API answers like the Node/Mongoose backend, over a real Mongo wire server."""
from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from bson import ObjectId

from shadow.demo.marketplace.api import create_app

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX = re.compile(r"^[0-9a-f]{24}$")


def js_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def get(base: str, path: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(base + path) as response:
        return response.status, await response.json()


async def test_user_is_shown_without_secrets_in_node_shape(sample_api, marketplace) -> None:
    users = marketplace.dataset.collections["users"]
    user = next(u for u in users if u["refreshTokens"] and u.get("referredBy"))
    unverified = next(u for u in users if "emailVerificationToken" in u)
    status, body = await get(sample_api, f"/api/users/{unverified['_id']}")
    assert status == 200 and body["isEmailVerified"] is False
    assert "emailVerificationToken" not in body and "emailVerificationExpires" not in body
    status, body = await get(sample_api, f"/api/users/{user['_id']}")
    assert status == 200
    assert body["_id"] == str(user["_id"])
    assert body["referredBy"] == str(user["referredBy"])
    assert body["createdAt"] == js_iso(user["createdAt"]) and ISO_MS.match(body["createdAt"])
    assert body["profile"]["firstName"] == user["profile"]["firstName"]
    for secret in ("password", "refreshTokens", "emailVerificationToken", "emailVerificationExpires", "__v"):
        assert secret not in body
    assert [p["credentialId"] for p in body["passkeys"]] == [p["credentialId"] for p in user["passkeys"]]


async def test_payment_amount_is_decimal128_json_and_mixed_ids_verbatim(sample_api, marketplace) -> None:
    payments = marketplace.dataset.collections["payments"]
    template = next(p for p in payments if isinstance(p["purchaseRequestId"], str))
    status, body = await get(sample_api, f"/api/payments/{template['_id']}")
    assert status == 200
    assert body["purchaseRequestId"].startswith("template:")
    assert body["purchaseRequestId"] == template["purchaseRequestId"]
    assert body["amount"] == {"value": {"$numberDecimal": str(template["amount"]["value"])},
                              "currency": template["amount"]["currency"]}
    assert HEX.match(body["buyerId"]) and ISO_MS.match(body["updatedAt"]) and "__v" not in body
    assert body["metadata"] == template["metadata"]


async def test_ordered_timeline_and_nested_ids(sample_api, marketplace) -> None:
    dispute = marketplace.dataset.collections["disputes"][0]
    status, body = await get(sample_api, f"/api/disputes/{dispute['_id']}")
    assert status == 200
    assert [(t["action"], t["actorId"], t["at"]) for t in body["timeline"]] == [
        (t["action"], str(t["actorId"]), js_iso(t["at"])) for t in dispute["timeline"]]


async def test_list_reads(sample_api, marketplace) -> None:
    addresses = marketplace.dataset.collections["addresses"]
    owner = addresses[0]["userId"]
    status, body = await get(sample_api, f"/api/users/{owner}/addresses")
    expected = sorted(str(a["_id"]) for a in addresses if a["userId"] == owner)
    assert status == 200 and body["count"] == len(expected) and [a["_id"] for a in body["data"]] == expected

    requests = marketplace.dataset.collections["purchaserequests"]
    buyer = requests[0]["buyerId"]
    status, body = await get(sample_api, f"/api/users/{buyer}/purchase-requests")
    assert body["count"] == sum(1 for r in requests if r["buyerId"] == buyer)
    assert all(r["buyerId"] == str(buyer) for r in body["data"])

    status, body = await get(sample_api, "/api/categories")
    active = {str(c["_id"]) for c in marketplace.dataset.collections["categories"] if c["isActive"]}
    assert {c["_id"] for c in body["data"]} == active and body["count"] == len(active) < 20


async def test_errors(sample_api) -> None:
    assert await get(sample_api, f"/api/payments/{ObjectId()}") == (404, {"error": "not found"})
    assert await get(sample_api, "/api/payments/not-an-id") == (400, {"error": "invalid id"})
    assert await get(sample_api, "/api/users/0123456789ab") == (400, {"error": "invalid id"})


async def test_writes_pass_through_mongo(sample_api, marketplace) -> None:
    buyer = str(marketplace.dataset.collections["users"][0]["_id"])
    new = {"buyerId": buyer, "purchaseRequestId": "template:pr-new", "sellerId": None,
           "amount": {"value": "12.50", "currency": "EUR"}, "method": "card",
           "idempotencyKey": "test-key-1", "metadata": {"channel": "web"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(sample_api + "/api/payments", json=new) as response:
            assert response.status == 201
            created = await response.json()
        assert created["amount"]["value"] == {"$numberDecimal": "12.50"} and created["status"] == "pending"
        async with session.post(sample_api + "/api/payments", json=new) as response:
            assert response.status == 409  # same pending idempotency key
        async with session.get(f"{sample_api}/api/payments/{created['_id']}") as response:
            assert await response.json() == created
        async with session.patch(f"{sample_api}/api/payments/{created['_id']}", json={"status": "completed"}) as response:
            assert response.status == 200
            patched = await response.json()
        assert patched["status"] == "completed" and patched["updatedAt"] >= created["updatedAt"]
        async with session.patch(f"{sample_api}/api/payments/{created['_id']}", json={"status": "lost"}) as response:
            assert response.status == 400 and "lost" in (await response.json())["error"]

        address = str(marketplace.dataset.collections["addresses"][0]["_id"])
        async with session.delete(f"{sample_api}/api/addresses/{address}") as response:
            assert response.status == 204 and await response.read() == b""
        async with session.get(f"{sample_api}/api/addresses/{address}") as response:
            assert response.status == 404


async def test_export_is_chunked_ndjson_and_blob_slow(sample_api, marketplace) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(sample_api + "/api/export/payments") as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert response.content_type == "application/x-ndjson"
            lines = (await response.read()).splitlines()
        ids = [orjson.loads(line)["_id"] for line in lines]
        assert ids == sorted(str(p["_id"]) for p in marketplace.dataset.collections["payments"])
        async with session.get(sample_api + "/api/blob?size=100000") as response:
            body = await response.read()
        assert len(body) == 100000 and orjson.loads(body)["padding"].startswith("x")
        started = asyncio.get_running_loop().time()
        async with session.get(sample_api + "/api/slow?ms=150") as response:
            assert await response.json() == {"sleptMs": 150}
        assert asyncio.get_running_loop().time() - started >= 0.15


async def test_dual_write_reaches_postgres_after_the_lag(marketplace) -> None:
    payment = marketplace.dataset.collections["payments"][0]
    target = "refunded" if payment["status"] != "refunded" else "failed"
    runner = web.AppRunner(create_app(marketplace.mongo_uri, marketplace.mongo_db,
                                      dual_write_dsn=marketplace.pg_dsn, dual_write_lag=0.3))
    await runner.setup()
    conn = await asyncpg.connect(marketplace.pg_dsn)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            async with session.patch(f"http://{host}:{port}/api/payments/{payment['_id']}",
                                     json={"status": target}) as response:
                assert response.status == 200 and (await response.json())["status"] == target
        query = "SELECT status::text FROM payments WHERE legacy_object_id = $1"
        assert await conn.fetchval(query, str(payment["_id"])) == payment["status"]  # PG lags
        for _ in range(50):
            await asyncio.sleep(0.05)
            if await conn.fetchval(query, str(payment["_id"])) == target:
                break
        assert await conn.fetchval(query, str(payment["_id"])) == target
    finally:
        await conn.close()
        await runner.cleanup()

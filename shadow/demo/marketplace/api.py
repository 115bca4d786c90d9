"""The sample upstream API: the marketplace served from Mongo the way the Node/Mongoose
backend does (documents in `toJSON` shape, see tojson.py and docs/domain.md).

Runs as the upstream the proxy sits in front of (tests, demo, benchmarks):
`create_app(mongo_uri, db_name)` → aiohttp Application, or
`python -m shadow.demo.marketplace.api --mongo URL --db NAME --port P`.

Single reads answer the document itself, list reads `{"data": [...], "count": n}`,
unknown ids `404 {"error": "not found"}`, malformed ids `400 {"error": "invalid id"}`.
Writes touch Mongo only — unless dual-write is on (`dual_write_dsn`, dualwrite.py): then
`PATCH /api/payments/{id}` (and the articles family's writes, articles.py) also update
PostgreSQL `lag` seconds later, off the request, and a PG failure is only logged (the
production dual-write; the source of transients).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from aiohttp import web
from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient, ReturnDocument

from shadow.demo.marketplace.articles import add_article_routes
from shadow.demo.marketplace.backends import BACKENDS, HEX_ID, Backends, BadRequest, object_id
from shadow.demo.marketplace.dualwrite import DualWrite
from shadow.demo.marketplace.generate import CURRENCIES
from shadow.demo.marketplace.tojson import to_api
from shadow.demo.marketplace.views import add_view_routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadCache = dict[tuple[str, str], bytes]
READ_CACHE: web.AppKey[ReadCache | None] = web.AppKey("read_cache")

PAYMENT_STATUSES = ("pending", "processing", "completed", "failed", "refunded")
PAYMENT_METHODS = ("card", "bank_transfer", "crypto", "wallet")
MAX_BLOB_BYTES = 64 * 1024 * 1024
MAX_SLOW_MS = 60_000


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _now_ms() -> datetime:
    """`new Date()`: UTC, millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@web.middleware
async def _bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as bad:
        return _error(400, str(bad))


# --------------------------------------------------------------------------- reads


def _single(collection: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        cache = request.app[READ_CACHE]
        if cache is not None:
            body = cache.get((collection, request.match_info["id"]))
            if body is not None:
                return web.Response(body=body, content_type="application/json")
        doc = await request.app[BACKENDS].db[collection].find_one({"_id": object_id(request.match_info["id"])})
        if doc is None:
            return _error(404, "not found")
        response = _json(to_api(collection, doc))
        if cache is not None:
            assert isinstance(response.body, bytes)
            cache[(collection, request.match_info["id"])] = response.body
        return response
    return handler


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _listing(collection: str, owner_field: str | None, fixed: dict[str, Any] | None = None) -> Any:
    async def handler(request: web.Request) -> web.Response:
        query = dict(fixed or {})
        if owner_field is not None:
            query[owner_field] = object_id(request.match_info["id"])
        docs = await request.app[BACKENDS].db[collection].find(query).sort("_id", 1).to_list(None)
        return _json({"data": [to_api(collection, doc) for doc in docs], "count": len(docs)})
    return handler


async def export_payments(request: web.Request) -> web.StreamResponse:
    """Every payment as NDJSON, streamed in chunks while the cursor is read."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    lines: list[bytes] = []
    async for doc in request.app[BACKENDS].db["payments"].find({}).sort("_id", 1):
        lines.append(orjson.dumps(to_api("payments", doc)) + b"\n")
        if len(lines) >= 50:
            await response.write(b"".join(lines))
            lines.clear()
    if lines:
        await response.write(b"".join(lines))
    await response.write_eof()
    return response


def _int_query(request: web.Request, name: str, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer in [{low}, {high}], got {raw!r}")
    return int(raw)


async def blob(request: web.Request) -> web.Response:
    """A JSON body of exactly `size` bytes (`{"padding":"xxx…"}`), for body-limit tests."""
    size = _int_query(request, "size", 14, MAX_BLOB_BYTES)
    return web.Response(body=b'{"padding":"' + b"x" * (size - 14) + b'"}', content_type="application/json")


async def slow(request: web.Request) -> web.Response:
    delay = _int_query(request, "ms", 0, MAX_SLOW_MS)
    await asyncio.sleep(delay / 1000)
    return _json({"sleptMs": delay})


# --------------------------------------------------------------------------- writes


def _mixed(body: dict[str, Any], field: str) -> ObjectId | str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string or null, got {value!r}")
    return ObjectId(value.lower()) if HEX_ID.match(value) else value


def _decimal(value: Any, field: str) -> Decimal128:
    try:
        amount = Decimal(str(value)) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise BadRequest(f"{field} must be a non-negative decimal, got {value!r}")
    return Decimal128(str(value))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


async def create_payment(request: web.Request) -> web.Response:
    body = await _body(request)
    amount = body.get("amount")
    if not isinstance(amount, dict) or amount.get("currency") not in CURRENCIES:
        raise BadRequest(f"amount must be {{value, currency}} with currency in {CURRENCIES}, got {amount!r}")
    method = body.get("method", "card")
    if method not in PAYMENT_METHODS:
        raise BadRequest(f"method must be one of {PAYMENT_METHODS}, got {method!r}")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequest(f"metadata must be an object, got {metadata!r}")
    now = _now_ms()
    doc = {
        "_id": ObjectId(),
        "buyerId": object_id(str(body.get("buyerId", ""))),
        "purchaseRequestId": _mixed(body, "purchaseRequestId"),
        "sellerOfferId": _mixed(body, "sellerOfferId"),
        "sellerId": _mixed(body, "sellerId"),
        "amount": {"value": _decimal(amount.get("value"), "amount.value"), "currency": amount["currency"]},
        "status": "pending", "method": method, "blockchain": body.get("blockchain"), "metadata": metadata,
        "idempotencyKey": body.get("idempotencyKey"),
        "createdAt": now, "updatedAt": now, "__v": 0,
    }
    payments = request.app[BACKENDS].db["payments"]
    if doc["idempotencyKey"] is not None and await payments.find_one(
            {"idempotencyKey": doc["idempotencyKey"], "status": "pending"}):
        return _error(409, "duplicate idempotencyKey")
    await payments.insert_one(doc)
    return _json(to_api("payments", doc), 201)


async def update_payment(request: web.Request) -> web.Response:
    payment_id = object_id(request.match_info["id"])
    body = await _body(request)
    unknown = set(body) - {"status", "metadata"}
    if unknown:
        raise BadRequest(f"only status and metadata can change, got {sorted(unknown)}")
    if "status" in body and body["status"] not in PAYMENT_STATUSES:
        raise BadRequest(f"status must be one of {PAYMENT_STATUSES}, got {body['status']!r}")
    if "metadata" in body and not isinstance(body["metadata"], dict):
        raise BadRequest(f"metadata must be an object, got {body['metadata']!r}")
    changes = {**body, "updatedAt": _now_ms()}
    doc = await request.app[BACKENDS].db["payments"].find_one_and_update(
        {"_id": payment_id}, {"$set": changes}, return_document=ReturnDocument.AFTER)
    if doc is None:
        return _error(404, "not found")
    dual = request.app[BACKENDS].dual_write
    if dual is not None:
        dual.schedule(str(payment_id), changes)
    return _json(to_api("payments", doc))


async def delete_address(request: web.Request) -> web.Response:
    result = await request.app[BACKENDS].db["addresses"].delete_one({"_id": object_id(request.match_info["id"])})
    return _error(404, "not found") if result.deleted_count == 0 else web.Response(status=204)


# --------------------------------------------------------------------------- app


def create_app(mongo_uri: str, db_name: str, dual_write_dsn: str | None = None,
               dual_write_lag: float | Callable[[], float] = 0.0, read_cache: bool = False) -> web.Application:
    """The sample API over the Mongo database `db_name` (clients opened on startup).

    read_cache (benchmarks only): single-document reads are answered from memory after
    their first read, so the upstream is not what limits a proxy benchmark; writes clear it.
    """
    if not callable(dual_write_lag) and dual_write_lag < 0:
        raise ValueError(f"dual_write_lag must be >= 0, got {dual_write_lag!r}")
    app = web.Application(middlewares=[_bad_requests])
    backends = app[BACKENDS] = Backends()
    app[READ_CACHE] = {} if read_cache else None
    if read_cache:
        @web.middleware
        async def clear_on_write(request: web.Request, handler: Handler) -> web.StreamResponse:
            cache = request.app[READ_CACHE]
            if request.method not in ("GET", "HEAD") and cache is not None:
                cache.clear()
            return await handler(request)
        app.middlewares.append(clear_on_write)

    async def mongo(app: web.Application) -> AsyncIterator[None]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, tz_aware=True)
        backends.db = client[db_name]
        yield
        await client.close()

    async def postgres(app: web.Application) -> AsyncIterator[None]:
        import asyncpg  # only when dual-writing

        pool = await asyncpg.create_pool(dual_write_dsn, min_size=1, max_size=4)
        backends.dual_write = dual = DualWrite(pool, dual_write_lag)
        yield
        await dual.close()
        await pool.close()

    app.cleanup_ctx.append(mongo)
    if dual_write_dsn:
        app.cleanup_ctx.append(postgres)
    app.router.add_get("/api/users/{id}", _single("users"))
    app.router.add_get("/api/users/{id}/addresses", _listing("addresses", "userId"))
    app.router.add_get("/api/users/{id}/purchase-requests", _listing("purchaserequests", "buyerId"))
    app.router.add_get("/api/addresses/{id}", _single("addresses"))
    app.router.add_delete("/api/addresses/{id}", delete_address)
    app.router.add_get("/api/categories", _listing("categories", None, {"isActive": True}))
    app.router.add_get("/api/categories/{id}", _single("categories"))
    app.router.add_get("/api/seller-offers/{id}", _single("selleroffers"))
    app.router.add_get("/api/purchase-requests/{id}", _single("purchaserequests"))
    app.router.add_post("/api/payments", create_payment)
    app.router.add_get("/api/payments/{id}", _single("payments"))
    app.router.add_patch("/api/payments/{id}", update_payment)
    app.router.add_get("/api/funds-ledger/{id}", _single("fundsledgerentries"))
    app.router.add_get("/api/disputes/{id}", _single("disputes"))
    app.router.add_get("/api/export/payments", export_payments)
    app.router.add_get("/api/blob", blob)
    app.router.add_get("/api/slow", slow)
    app.router.add_get("/healthz", healthz)
    add_view_routes(app)  # view models: views.py
    add_article_routes(app)  # the articles family (issue 20)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shadow.demo.marketplace.api", description=__doc__.splitlines()[0])
    parser.add_argument("--mongo", required=True, help="Mongo URL")
    parser.add_argument("--db", default="marketplace", help="Mongo database (default: marketplace)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--dual-write-pg", default=None, help="PostgreSQL DSN: PATCH /api/payments also writes PG")
    parser.add_argument("--dual-write-lag", type=float, default=0.0, help="seconds between the Mongo and PG writes")
    parser.add_argument("--cache", action="store_true", help="benchmarks: answer repeated single reads from memory")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    web.run_app(create_app(args.mongo, args.db, args.dual_write_pg, args.dual_write_lag, read_cache=args.cache),
                host=args.host, port=args.port, access_log=None if args.quiet else logging.getLogger("aiohttp.access"),
                print=None if args.quiet else print)


if __name__ == "__main__":
    main()
